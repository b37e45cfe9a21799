-- 0004: retention per job.
--
--  * keep_for: seconds a finished job is kept, overriding the settings' keep_*_for for it
--    (NULL: the settings decide).
--  * holds: callers of run() waiting for the job's result; while it is above zero the
--    job's own keep_for is not applied (the settings' retention is), so a record dropped
--    "as soon as finished" still reaches every waiter first.

ALTER TABLE jobs ADD COLUMN keep_for double precision;
ALTER TABLE jobs ADD COLUMN holds integer NOT NULL DEFAULT 0;
-- The retention sweep finds jobs with their own keep_for here, not by scanning a state.
CREATE INDEX jobs_own_keep_idx ON jobs (state, finished_at) WHERE keep_for IS NOT NULL;
