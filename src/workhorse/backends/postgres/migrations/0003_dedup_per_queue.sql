-- 0003: a dedup key is unique per queue, not across the whole store.
--
-- The four backends keep one contract, and on Redis Cluster a queue's keys share one
-- hash slot, so a dedup key can only be checked atomically inside its queue (BullMQ's
-- dedup ids are per queue too). A singleton task whose jobs go to several queues gets
-- one live job per queue. Loosening the index cannot fail on existing rows.
DROP INDEX jobs_dedup_idx;
CREATE UNIQUE INDEX jobs_dedup_idx ON jobs (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'active');
