-- 0008: a finish is idempotent on replay. finish_token keeps the call that finished the job
-- (a digest of its lease token and its outcome), so a finish whose commit happened but
-- whose reply was lost, sent again as it was, is reported applied instead of refused; any
-- other finish with that token is still refused. A reclaim or a retry clears it.

ALTER TABLE jobs ADD COLUMN finish_token text;
