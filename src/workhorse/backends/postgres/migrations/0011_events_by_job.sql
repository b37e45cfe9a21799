-- 0011: a job's events by its id (job_events: the dashboard's job page), one index range
-- instead of a walk of the log. The log is bounded (max_events), so building it is quick.
CREATE INDEX events_job_idx ON events (job_id, id) WHERE job_id IS NOT NULL;
