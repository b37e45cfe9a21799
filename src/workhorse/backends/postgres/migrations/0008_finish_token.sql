-- 0008: a finish is idempotent on replay. finish_token keeps the call that finished the job
-- (an id the backend gives each outcome it sends), so a finish whose commit happened but
-- whose reply was lost, sent again as it was, is reported applied instead of refused; any
-- other finish of that lease is still refused. A reclaim or a retry clears it.

ALTER TABLE jobs ADD COLUMN finish_token text;
