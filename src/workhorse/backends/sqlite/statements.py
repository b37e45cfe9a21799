"""The SQL of the SQLite backend's job statements: claim, enqueue, finish, renew, purge, seq."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

# The states that hold a dedup key. Written as comparisons, not ``state IN (...)``: SQLite
# builds a temporary b-tree for a list of three constants each time a statement writing a
# row tests the dedup index's condition (docs/profiles.md, issue 16: SQLite schema 11).
LIVE = "(state = 'queued' OR state = 'scheduled' OR state = 'active')"
# A job whose own keep_for decides its retention: it has one, and no run() caller holds it.
OWN_RETENTION = "keep_for IS NOT NULL AND holds = 0"
JOB_COLS = (
    "id, task, queue, state, data, priority, attempts, max_attempts, created_at, run_at, "
    "started_at, finished_at, progress, result, error, logs, timeout, worker, expires_at, "
    "dedup_key, keep_for, stalls, max_stalls, logs_dropped"
)
# :logs is the job's whole kept array (merged and capped in the same transaction), or NULL.
SET_LOGS = "logs = coalesce(:logs, logs), logs_dropped = logs_dropped + :dropped"
OWNED_LOGS = "SELECT logs FROM wh_jobs WHERE id = :id AND state = 'active' AND token = :token"
OWNED = "WHERE id = :id AND state = 'active' AND token = :token"

PROMOTE = (
    "UPDATE wh_jobs SET state = 'queued' "
    "WHERE state = 'scheduled' AND queue = :queue AND run_at <= :now"
)
CLAIM = """
UPDATE wh_jobs SET state = 'active', attempts = attempts + 1, worker = :worker,
    token = lower(hex(randomblob(8))), started_at = :now,
    expires_at = :now + coalesce(lease, :lease)
WHERE rid IN (
    SELECT rid FROM wh_jobs INDEXED BY wh_jobs_ready
    WHERE state = 'queued' AND queue = :queue AND run_at <= :now
      AND NOT EXISTS (SELECT 1 FROM wh_paused WHERE queue = :queue)
    ORDER BY priority DESC, run_at, seq LIMIT :limit)
RETURNING id, token, task, queue, data, attempts, max_attempts, timeout,
    coalesce(lease, :lease), created_at, priority, run_at, seq, stalls
"""
INSERT = (
    "INSERT INTO wh_jobs (id, task, queue, state, data, priority, max_attempts, timeout, "
    "lease, dedup_key, created_at, run_at, seq, keep_for, holds, max_stalls, queued_event) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
EVENT = "INSERT INTO wh_events (type, job_id, task, queue, data, at) VALUES (?, ?, ?, ?, ?, ?)"
NUMBERED_EVENT = (
    "INSERT INTO wh_events (id, type, job_id, task, queue, data, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
NUMBERED_RUN_EVENT = (
    "INSERT INTO wh_events (id, type, job_id, task, queue, data, at, run) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A published event with its flow run (data["run"]), so a run's events are read by index.
RUN_EVENT = (
    "INSERT INTO wh_events (type, job_id, task, queue, data, at, run) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A finish tells an owned row by the count of rows changed, not by RETURNING, which SQLite
# serves from a temporary b-tree it builds per statement (docs/profiles.md); the attempt is
# the lease's (an owned row's cannot change).
END = (
    f"UPDATE wh_jobs SET state = :state, result = :result, error = :error, "
    f"completed_event = :completed, "
    f"finished_at = :now, token = NULL, expires_at = NULL, {SET_LOGS} {OWNED}"
)
REQUEUE = (
    f"UPDATE wh_jobs SET state = :state, run_at = :run_at, seq = :seq, token = NULL, "
    f"expires_at = NULL, worker = NULL, cancel_requested = 0, error = :error, "
    f"attempts = attempts - :refund, {SET_LOGS} {OWNED}"
)
RENEW = f"UPDATE wh_jobs SET expires_at = :expires {OWNED} RETURNING cancel_requested"

PURGE_CHUNK = 2000
_FINISHED_IN = "FROM wh_jobs WHERE state = :state AND finished_at IS NOT NULL"
# The queues with finished jobs of a state, found by seeking from one to the next in the
# per-queue index instead of reading every row.
FINISHED_QUEUES = f"""queues(name) AS (
    SELECT (SELECT queue {_FINISHED_IN} ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue {_FINISHED_IN} AND queue > name ORDER BY queue LIMIT 1)
    FROM queues WHERE name IS NOT NULL)"""
# Each queue's finished jobs of a state past its newest :keep: everything at or before its
# (:keep + 1)-th newest (none when it has no more than :keep), one index range per queue.
# MATERIALIZED and CROSS JOIN fix the plan: each edge is found once, then its range read.
PAST_KEEP = f"""
WITH RECURSIVE {{queues}}, edges(name, rid) AS MATERIALIZED (
    SELECT name, (SELECT rid {_FINISHED_IN} AND queue = name
                  ORDER BY finished_at DESC, seq DESC LIMIT 1 OFFSET :keep)
    FROM queues WHERE name IS NOT NULL)
SELECT j.rid, j.keep_for, j.holds FROM edges CROSS JOIN wh_jobs e ON e.rid = edges.rid
CROSS JOIN wh_jobs j ON j.state = :state AND j.queue = edges.name AND j.finished_at IS NOT NULL
    AND (j.finished_at, j.seq) <= (e.finished_at, e.seq)"""


def purge_select(rule: str, queue: str | None, retention: bool) -> str:
    """The rids one chunk of a purge deletes, by ``rule``: "own" (a job's own keep_for
    passed), "age" (finished before :cutoff) or "rank" (past each queue's newest :keep)."""
    in_queue = "" if queue is None else " AND queue = :queue"
    # In the retention sweep a job with its own keep_for, unheld, follows only that.
    not_own = f" AND NOT ({OWN_RETENTION})" if retention else ""
    if rule == "own":
        return (
            f"SELECT rid FROM wh_jobs WHERE state = :state AND {OWN_RETENTION} "
            f"AND finished_at + keep_for <= :now{in_queue} LIMIT :chunk"
        )
    if rule == "age":
        return (
            "SELECT rid FROM wh_jobs WHERE state = :state AND finished_at IS NOT NULL "
            f"AND finished_at <= :cutoff{in_queue}{not_own} LIMIT :chunk"
        )
    # Counted per queue and deleted in one write transaction; ranking after the age cut is
    # the same (the old ones were the tail). Jobs with their own keep_for count toward
    # keep_last but are not what it removes.
    queues = FINISHED_QUEUES if queue is None else "queues(name) AS (SELECT :queue)"
    past = PAST_KEEP.format(queues=queues)
    return f"SELECT rid FROM ({past}) WHERE 1{not_own} LIMIT :chunk"


# Rows per statement of insert_rows: 50 jobs' 17 values stay under the 999 variables of
# SQLite before 3.32.
INSERT_GROUP = 50
_GROUPED: dict[str, str] = {}


def insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``conn.executemany(sql, rows)`` for an ``INSERT ... VALUES (?, ...)``: the rows in
    order, INSERT_GROUP to a statement (``VALUES (...), (...), ...``), the rest one by one.
    Each run of a statement opens a cursor on the table and on each of its indexes, and
    starts and ends the statement: once per group instead of once per row."""
    full = len(rows) - len(rows) % INSERT_GROUP
    if full:
        grouped = _GROUPED.get(sql)
        if grouped is None:
            head, _, one = sql.rpartition("VALUES ")
            grouped = _GROUPED[sql] = head + "VALUES " + ", ".join([one] * INSERT_GROUP)
        conn.executemany(
            grouped,
            [
                tuple(chain.from_iterable(rows[k : k + INSERT_GROUP]))
                for k in range(0, full, INSERT_GROUP)
            ],
        )
    if full < len(rows):
        conn.executemany(sql, rows[full:])
