-- 0001: the jobs table, queue flags and the migration ledger.
-- Runs with search_path set to the backend's schema; names are unqualified on purpose.
--
-- Index rationale (the table is expected to hold millions of finished rows):
--  * Live rows (queued, active) are a tiny fraction of the table, so every index that the
--    hot paths use is PARTIAL on the live state. Finished rows never enter them, and their
--    size tracks the backlog, not the history.
--  * jobs_claim_idx serves the claim: queue = $1 AND state = 'queued' ordered by
--    priority DESC, run_at, seq; the planner walks it in order and stops after LIMIT rows,
--    skipping rows locked by other claimers (SKIP LOCKED).
--  * jobs_due_idx answers "when is the next job of these queues due?" (min(run_at)) for
--    an idle worker's wait, with one index probe per queue.
--  * No index on expires_at: reclaim reads the active rows through jobs_state_created_idx
--    (state = 'active': a few hundred rows at most), and every claim saves an index write.
--  * jobs_dedup_idx enforces one LIVE job per dedup key; the key is released the moment
--    the job leaves the live states, in the same statement, with no extra write.
--  * jobs_created_idx and jobs_state_created_idx serve listings newest first, unfiltered
--    or by state (the dashboard's tabs), as index scans that stop after LIMIT + OFFSET.
--  * jobs_finished_idx serves retention (purge): "older than" and "beyond the newest N"
--    per state are range scans on it.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id text PRIMARY KEY,
    seq bigserial NOT NULL,  -- FIFO order within a priority; renewed on every requeue
    task text NOT NULL,
    queue text NOT NULL,
    state text NOT NULL DEFAULT 'queued'
        CONSTRAINT jobs_state_check
        CHECK (state IN ('queued', 'active', 'completed', 'failed', 'cancelled')),
    data bytea NOT NULL,  -- the encoded JSON exactly as enqueued (kept raw for quarantine)
    priority integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 1,
    timeout double precision,
    lease double precision,
    dedup_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    run_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    progress jsonb,
    result bytea,
    error jsonb,
    logs jsonb NOT NULL DEFAULT '[]',
    worker text,
    token text,
    expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false
);

CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_at, seq)
    WHERE state = 'queued';
CREATE INDEX jobs_due_idx ON jobs (queue, run_at) WHERE state = 'queued';
CREATE UNIQUE INDEX jobs_dedup_idx ON jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'active');
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_state_created_idx ON jobs (state, created_at DESC, id DESC);
CREATE INDEX jobs_finished_idx ON jobs (state, finished_at DESC, seq DESC)
    WHERE state IN ('completed', 'failed', 'cancelled');

CREATE TABLE queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false
);
