-- 0002: coordination (keys with a TTL, counters), the durable event log, live workers.
--
--  * events.id is the readers' cursor. events.xid records the writing transaction so
--    that readers can hold back events of transactions that are still in flight (see
--    the events() query): ids are taken at insert time but become visible at commit.
--  * The log is bounded by deleting the oldest ids (a range on the primary key).
--  * kv_expiry_idx and counters_expiry_idx let the sweep delete expired keys by range.

CREATE TABLE kv (
    key text PRIMARY KEY,
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
    at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workers (
    id text PRIMARY KEY,
    info jsonb NOT NULL,
    last_seen timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
