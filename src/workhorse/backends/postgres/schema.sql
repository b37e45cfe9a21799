-- The current schema in one piece, used to create a brand-new schema on first open.
-- It must stay equal to applying migrations/NNNN_*.sql one by one: a test compares the
-- two through the catalog (columns, indexes, constraints). When you add a migration,
-- fold its change into this file too. Index rationale: see the migration files.
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
    cancel_requested boolean NOT NULL DEFAULT false,
    keep_for double precision,
    holds integer NOT NULL DEFAULT 0,
    stalls integer NOT NULL DEFAULT 0,
    max_stalls integer NOT NULL DEFAULT 3,
    logs_dropped integer NOT NULL DEFAULT 0,  -- older log lines dropped past the caps
    finish_token text  -- the id of the finish call that finished it: see 0008
);

CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_at, seq)
    WHERE state = 'queued';
CREATE INDEX jobs_due_idx ON jobs (queue, run_at) WHERE state = 'queued';
CREATE UNIQUE INDEX jobs_dedup_idx ON jobs (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'active');
-- Ascending: pages newest first read them backwards, and new entries append (0015).
CREATE INDEX jobs_state_created_idx ON jobs (state, created_at, id);
CREATE INDEX jobs_queue_state_created_idx ON jobs (queue, state, created_at, id);
CREATE INDEX jobs_own_keep_idx ON jobs (state, finished_at) WHERE keep_for IS NOT NULL;
CREATE INDEX jobs_finished_queue_idx ON jobs (state, queue, finished_at DESC, seq DESC)
    WHERE state IN ('completed', 'failed', 'cancelled');

-- Count deltas per (queue, state), appended by the statements that change states: see 0010.
CREATE TABLE job_counts (
    queue text NOT NULL,
    state text NOT NULL,
    n bigint NOT NULL
);

CREATE TABLE queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false
);

CREATE TABLE kv (
    -- Byte order: a scan by prefix is one range of the key index (migration 0014).
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL,
    expires_at timestamptz
);
CREATE INDEX kv_expiry_idx ON kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE counters (
    key text PRIMARY KEY,
    value bigint NOT NULL,
    expires_at timestamptz
);
CREATE INDEX counters_expiry_idx ON counters (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE events (
    id bigserial PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type text NOT NULL,
    job_id text,
    task text,
    queue text,
    data jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT now(),
    run text  -- a flow run's events (data->>'run'), read by run: see 0012 and 0013
);
-- A flow run's events (with a run) are read by their run, not as a job's (0014).
CREATE INDEX events_job_idx ON events (job_id, id) WHERE job_id IS NOT NULL AND run IS NULL;
CREATE INDEX events_run_idx ON events (run, xid, id) WHERE run IS NOT NULL;
-- Readers page the log in this order (positions, see 0013).
CREATE INDEX events_position_idx ON events (xid, id);

CREATE TABLE workers (
    id text PRIMARY KEY,
    info jsonb NOT NULL,
    last_seen timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
