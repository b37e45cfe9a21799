-- 0010: counts() from counters, and listing pages that stay fast at a million jobs.
--
-- job_counts holds count deltas per (queue, state): each statement that changes jobs'
-- states (enqueue, claim, finish, cancel, retry, reclaim, quarantine, purge, retention)
-- appends its own net change from the rows its CTEs return, in the same statement. Rows are
-- only appended (no counter row for writers to wait on); counts() sums them and folds them
-- into one row per (queue, state) now and then. No trigger: a trigger ran in every write
-- statement, renewals included, and cost the no-op rate 30 % (docs/profiles.md).
--
-- Jobs are counted once here, under a lock that keeps writers out until this commits: a
-- worker of the previous version still running afterwards would not keep the counts, so
-- stop the old workers before migrating (docs/guarantees.md, upgrading).

CREATE TABLE job_counts (
    queue text NOT NULL,
    state text NOT NULL,
    n bigint NOT NULL
);
LOCK TABLE jobs IN SHARE MODE;
INSERT INTO job_counts (queue, state, n) SELECT queue, state, count(*) FROM jobs GROUP BY 1, 2;

-- A queue's page lists its jobs newest first, per state or merged from the five states'
-- ranges; the listing of all queues merges the states' ranges of jobs_state_created_idx,
-- so the index by creation time alone goes (the table keeps the same number of indexes).
CREATE INDEX jobs_queue_state_created_idx ON jobs (queue, state, created_at DESC, id DESC);
DROP INDEX jobs_created_idx;
