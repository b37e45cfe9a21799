-- 0009: one index on finished jobs. jobs_finished_queue_idx (0005) serves every purge,
-- "older than" included (a range per queue), so jobs_finished_idx only cost each finish an
-- index insert (docs/profiles.md "PostgreSQL finish after the hardening").

DROP INDEX IF EXISTS jobs_finished_idx;
