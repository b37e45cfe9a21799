-- 0006: the stall budget.
--
--  * stalls: tries whose worker died (the lease expired and was reclaimed); they are not
--    counted in attempts, which count only tries that ran to an outcome.
--  * max_stalls: how many such tries are run again; one more fails the job.

ALTER TABLE jobs ADD COLUMN stalls integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN max_stalls integer NOT NULL DEFAULT 3;
