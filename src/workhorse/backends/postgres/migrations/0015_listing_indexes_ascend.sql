-- 0015: the listing indexes ascend; a page newest first reads them backwards. Descending,
-- each new job's entries went in at the left end of its state's range: every insert
-- walked down from the root, and each full page split in halves with a whole page of WAL
-- (a bulk job wrote ~1,250 bytes of WAL, ~9,000 server instructions more than now;
-- docs/profiles.md "Issue 16: PostgreSQL bulk enqueue"). Ascending, a queued job's entries
-- go at the right end of their range, where PostgreSQL appends and splits pages full.

DROP INDEX jobs_state_created_idx;
CREATE INDEX jobs_state_created_idx ON jobs (state, created_at, id);
DROP INDEX jobs_queue_state_created_idx;
CREATE INDEX jobs_queue_state_created_idx ON jobs (queue, state, created_at, id);
