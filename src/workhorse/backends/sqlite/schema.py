"""The SQLite schema: its text, its version, and the upgrade of a file an older workhorse wrote."""

from __future__ import annotations

import sqlite3

from workhorse.backends.sqlite.statements import LIVE
from workhorse.backends.sqlite.tally import FILL
from workhorse.job import MAX_STALLS

# 2: a dedup key is unique per queue; 3: keep_for and holds; 4: finished jobs by queue;
# 5: stalls and max_stalls; 6: logs_dropped; 7: wh_counts and jobs by queue, state and age;
# 8: events by job, and a run column for a flow run's events; 9: a job's job.queued event
# found from its row, not indexed, and no index by creation time across queues; 10: a
# completed job's job.completed found from its row; 11: the dedup index's condition
# without an IN list, and a flow run's events left out of the job-events index
SCHEMA_VERSION = 11

# Internal states: the public ones, except that "scheduled" is stored (not derived) so the
# claim index only ever holds due jobs. A scheduled row whose run_at has passed is queued.
SCHEMA = f"""
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
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    keep_for REAL,
    holds INTEGER NOT NULL DEFAULT 0,
    stalls INTEGER NOT NULL DEFAULT 0,
    max_stalls INTEGER NOT NULL DEFAULT {MAX_STALLS},
    logs_dropped INTEGER NOT NULL DEFAULT 0,
    queued_event INTEGER,
    completed_event INTEGER
);
CREATE INDEX IF NOT EXISTS wh_jobs_ready
    ON wh_jobs (queue, priority DESC, run_at, seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS wh_jobs_scheduled
    ON wh_jobs (queue, run_at) WHERE state = 'scheduled';
CREATE INDEX IF NOT EXISTS wh_jobs_lease
    ON wh_jobs (expires_at) WHERE state = 'active';
DROP INDEX IF EXISTS wh_jobs_dedup;
CREATE UNIQUE INDEX IF NOT EXISTS wh_jobs_dedup_queue ON wh_jobs (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND {LIVE};
CREATE INDEX IF NOT EXISTS wh_jobs_finished
    ON wh_jobs (state, finished_at, seq) WHERE finished_at IS NOT NULL;
-- Retention's count is per queue: each queue's newest are one range here.
CREATE INDEX IF NOT EXISTS wh_jobs_finished_queue
    ON wh_jobs (state, queue, finished_at, seq) WHERE finished_at IS NOT NULL;
-- The retention sweep finds jobs with their own keep_for here, not by scanning a state.
CREATE INDEX IF NOT EXISTS wh_jobs_own_keep ON wh_jobs (state, finished_at)
    WHERE keep_for IS NOT NULL;
-- Listings (reads.query_select): no index a claim or a finish writes. A queue's page newest
-- first (across queues: one range per queue, merged), and failed jobs, the state people
-- look for among many finished (a finish to another state or a claim only tests the
-- condition). Each index an enqueue writes is a page in every commit's WAL.
DROP INDEX IF EXISTS wh_jobs_created;
DROP INDEX IF EXISTS wh_jobs_queue_state_created;
CREATE INDEX IF NOT EXISTS wh_jobs_queue_created ON wh_jobs (queue, created_at, id);
CREATE INDEX IF NOT EXISTS wh_jobs_failed ON wh_jobs (queue, created_at, id)
    WHERE state = 'failed';
-- Kept by the transactions that change states (tally.py): counts() reads these, not jobs.
CREATE TABLE IF NOT EXISTS wh_counts (
    queue TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (queue, state)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS wh_events (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    job_id TEXT,
    task TEXT,
    queue TEXT,
    data TEXT,
    at REAL NOT NULL,
    run TEXT
);
-- A job's page reads its events here (job_events), not by walking the log. The job.queued
-- event its enqueue writes (no data) and the job.completed its finish writes are found by
-- the job row's queued_event and completed_event instead, so neither the enqueue's commit
-- nor a completion writes a page of this index (schema 9 and 10). A flow run's events
-- (a step's own, with its run) are read by their run, on every store (schema 11).
CREATE INDEX IF NOT EXISTS wh_events_job ON wh_events (job_id, id)
    WHERE job_id IS NOT NULL AND run IS NULL AND (type <> 'job.queued' OR data IS NOT NULL)
    AND type <> 'job.completed';
CREATE INDEX IF NOT EXISTS wh_events_run ON wh_events (run, id) WHERE run IS NOT NULL;
CREATE TABLE IF NOT EXISTS wh_paused (queue TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS wh_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS wh_counters (
    key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL
);
CREATE TABLE IF NOT EXISTS wh_workers (id TEXT PRIMARY KEY, info TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS wh_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO wh_meta (key, value) VALUES ('seq', 0);
"""


# The job.queued event each job's enqueue wrote, for the jobs of a file before schema 9.
QUEUED_EVENTS = """
UPDATE wh_jobs SET queued_event = e.id FROM (
    SELECT job_id, min(id) AS id FROM wh_events
    WHERE job_id IS NOT NULL AND type = 'job.queued' AND data IS NULL GROUP BY job_id) AS e
WHERE wh_jobs.id = e.job_id"""


# The job.completed event of each completed job, for the jobs of a file before schema 10.
COMPLETED_EVENTS = """
UPDATE wh_jobs SET completed_event = e.id FROM (
    SELECT job_id, max(id) AS id FROM wh_events
    WHERE job_id IS NOT NULL AND type = 'job.completed' GROUP BY job_id) AS e
WHERE wh_jobs.id = e.job_id"""


def upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring a file at ``version`` (0: new) to SCHEMA_VERSION, inside the caller's transaction."""
    if 1 <= version < 3:  # a file of an older version: its table lacks the new columns
        conn.execute("ALTER TABLE wh_jobs ADD COLUMN keep_for REAL")
        conn.execute("ALTER TABLE wh_jobs ADD COLUMN holds INTEGER NOT NULL DEFAULT 0")
    if 1 <= version < 5:
        conn.execute("ALTER TABLE wh_jobs ADD COLUMN stalls INTEGER NOT NULL DEFAULT 0")
        conn.execute(
            f"ALTER TABLE wh_jobs ADD COLUMN max_stalls INTEGER NOT NULL DEFAULT {MAX_STALLS}"
        )
    if 1 <= version < 6:
        conn.execute("ALTER TABLE wh_jobs ADD COLUMN logs_dropped INTEGER NOT NULL DEFAULT 0")
    if 1 <= version < 8:  # events written before have no run: read by walking, as before
        conn.execute("ALTER TABLE wh_events ADD COLUMN run TEXT")
    if 1 <= version < 9:
        conn.execute("ALTER TABLE wh_jobs ADD COLUMN queued_event INTEGER")
        conn.execute(QUEUED_EVENTS)
        conn.execute("DROP INDEX IF EXISTS wh_events_job")
    if 1 <= version < 10:
        conn.execute("ALTER TABLE wh_jobs ADD COLUMN completed_event INTEGER")
        conn.execute(COMPLETED_EVENTS)
        conn.execute("DROP INDEX IF EXISTS wh_events_job")  # made again without them
    if 1 <= version < 11:  # both made again below, with their new conditions
        conn.execute("DROP INDEX IF EXISTS wh_jobs_dedup_queue")
        conn.execute("DROP INDEX IF EXISTS wh_events_job")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    if 1 <= version < 7:  # count the jobs already there, once
        conn.execute(FILL)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
