-- 0014: kv keys compare in byte order, so that a scan by prefix (a flow run's keys, a hook
-- group's) reads one range of the key index. Under the database's own collation (C.UTF-8
-- here, or a linguistic one) the prefix test could use no index: every scan read the whole
-- table, which holds every run's keys (docs/decisions.md).
ALTER TABLE kv ALTER COLUMN key TYPE text COLLATE "C";

-- And a job's events by its id leave out a flow run's (a step's own events, with their
-- run): they are read by their run, on every store (docs/decisions.md).
DROP INDEX events_job_idx;
CREATE INDEX events_job_idx ON events (job_id, id) WHERE job_id IS NOT NULL AND run IS NULL;
