-- The SQLite schema as version 1 wrote it (workhorse at commit 111c0e8): the upgrade test
-- opens a file made with it.
CREATE TABLE IF NOT EXISTS wh_jobs (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    data BLOB NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout REAL,
    lease REAL,
    dedup_key TEXT,
    created_at REAL NOT NULL,
    run_at REAL NOT NULL,
    seq INTEGER NOT NULL,
    started_at REAL,
    finished_at REAL,
    progress TEXT,
    result BLOB,
    error TEXT,
    logs TEXT,
    worker TEXT,
    token TEXT,
    expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS wh_jobs_ready
    ON wh_jobs (queue, priority DESC, run_at, seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS wh_jobs_scheduled
    ON wh_jobs (queue, run_at) WHERE state = 'scheduled';
CREATE INDEX IF NOT EXISTS wh_jobs_lease
    ON wh_jobs (expires_at) WHERE state = 'active';
CREATE UNIQUE INDEX IF NOT EXISTS wh_jobs_dedup ON wh_jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'scheduled', 'active');
CREATE INDEX IF NOT EXISTS wh_jobs_finished
    ON wh_jobs (state, finished_at, seq) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS wh_jobs_created ON wh_jobs (created_at);

CREATE TABLE IF NOT EXISTS wh_events (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    job_id TEXT,
    task TEXT,
    queue TEXT,
    data TEXT,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS wh_paused (queue TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS wh_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS wh_counters (
    key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL
);
CREATE TABLE IF NOT EXISTS wh_workers (id TEXT PRIMARY KEY, info TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS wh_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO wh_meta (key, value) VALUES ('seq', 0);
