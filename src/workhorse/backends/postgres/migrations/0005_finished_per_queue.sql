-- 0005: retention's count is per queue (keep_completed, keep_failed, purge's keep_last):
-- each queue's newest finished jobs of a state are one range of this index, so the sweep
-- finds every queue's edge without reading the rows before it in other queues.

CREATE INDEX jobs_finished_queue_idx ON jobs (state, queue, finished_at DESC, seq DESC)
    WHERE state IN ('completed', 'failed', 'cancelled');
