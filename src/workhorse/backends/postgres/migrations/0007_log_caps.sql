-- 0007: a job's log lines are capped per job (max_log_lines, max_log_bytes): the newest are
-- kept, and logs_dropped counts the older ones dropped (readers see it as one line).

ALTER TABLE jobs ADD COLUMN logs_dropped integer NOT NULL DEFAULT 0;
