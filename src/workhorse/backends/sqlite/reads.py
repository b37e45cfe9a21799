"""Read-only questions about wh_jobs that need no decoding: counts, due times, query SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from workhorse.backends.sqlite.rows import to_json
from workhorse.backends.sqlite.statements import JOB_COLS
from workhorse.job import JobState

Clock = Callable[[], float]


def any_expired(conn: sqlite3.Connection, clock: Clock) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM wh_jobs WHERE state = 'active' AND expires_at <= ? LIMIT 1",
            (clock(),),
        ).fetchone()
        is not None
    )


def due_in(conn: sqlite3.Connection, clock: Clock, queues: Sequence[str]) -> float | None:
    """0 when a job is due in one of ``queues``, else seconds until the next one."""
    now = clock()
    paused = {r[0] for r in conn.execute("SELECT queue FROM wh_paused")}
    soonest: float | None = None
    for queue in queues:
        if queue in paused:
            continue
        if conn.execute(
            "SELECT 1 FROM wh_jobs WHERE state = 'queued' AND queue = ? LIMIT 1", (queue,)
        ).fetchone():
            return 0.0
        row = conn.execute(
            "SELECT run_at FROM wh_jobs WHERE state = 'scheduled' AND queue = ? "
            "ORDER BY run_at LIMIT 1",
            (queue,),
        ).fetchone()
        if row is not None:
            wait = max(0.0, row[0] - now)
            soonest = wait if soonest is None else min(soonest, wait)
    return soonest


def counts(
    conn: sqlite3.Connection, clock: Clock, queues: list[str] | None
) -> dict[str, dict[str, int]]:
    """From the counters (tally.py); a stored "scheduled" job whose time has come is
    queued (the next claim promotes it), found in the scheduled index."""
    now = clock()
    out: dict[str, dict[str, int]] = {}
    for q in queues or ():
        out[q] = dict.fromkeys(JobState, 0)
    sql, args = "SELECT queue, state, n FROM wh_counts WHERE n <> 0", []
    if queues is not None:
        sql += " AND queue IN (SELECT value FROM json_each(?))"
        args.append(to_json(queues))
    for queue, st, n in conn.execute(sql, args):
        out.setdefault(queue, dict.fromkeys(JobState, 0))[JobState(st)] += n
    waiting = [q for q, row in out.items() if row[JobState.SCHEDULED]]
    if waiting:
        for queue, n in conn.execute(
            "SELECT queue, count(*) FROM wh_jobs WHERE state = 'scheduled' "
            "AND queue IN (SELECT value FROM json_each(?)) AND run_at <= ? GROUP BY queue",
            (to_json(waiting), now),
        ):
            out[queue][JobState.SCHEDULED] -= n
            out[queue][JobState.QUEUED] += n
    return out


# Each public state as the stored states' ranges it covers, with the condition on run_at.
_STORED = ("queued", "scheduled", "active", "completed", "failed", "cancelled")
_RANGES: dict[JobState | None, list[tuple[str, str]]] = {
    None: [(st, "") for st in _STORED],
    JobState.QUEUED: [("queued", ""), ("scheduled", " AND run_at <= :now")],
    JobState.SCHEDULED: [("scheduled", " AND run_at > :now")],
    **{JobState(st): [(st, "")] for st in _STORED[2:]},
}
# Past this many index ranges a listing of one state across queues scans by age instead.
_MAX_RANGES = 200
_ORDER = "ORDER BY created_at DESC, id DESC"
# Every queue with jobs, seeking from one to the next in the index (one seek per queue).
_NEXT = "SELECT queue FROM wh_jobs INDEXED BY wh_jobs_queue_state_created"
_QUEUES = f"""WITH RECURSIVE queues(name) AS (
    SELECT ({_NEXT} ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT ({_NEXT} WHERE queue > name ORDER BY queue LIMIT 1) FROM queues
    WHERE name IS NOT NULL)
SELECT name FROM queues WHERE name IS NOT NULL"""


def query_select(
    conn: sqlite3.Connection, queue: str | None, state: JobState | None, task: str | None
) -> tuple[str, dict[str, Any]]:
    """The SELECT of ``query`` and the queues it names (:qN); the caller adds :queue,
    :task, :now, :limit and :offset.

    A page reads at most offset + limit entries of each (queue, stored state) range of
    wh_jobs_queue_state_created and merges them, so its cost does not grow with the jobs
    of other queues and states."""
    ranges = _RANGES[None if state is None else JobState(state)]
    also = "" if task is None else " AND task = :task"
    named: dict[str, Any] = {}
    if queue is not None:
        queues = [":queue"]
    elif state is not None:
        names = conn.execute(_QUEUES).fetchall()
        named = {f"q{i}": row[0] for i, row in enumerate(names)}
        queues = [f":{key}" for key in named]
        if not queues:
            return f"SELECT {JOB_COLS} FROM wh_jobs WHERE 0 LIMIT :limit OFFSET :offset", {}
    else:
        queues = []
    if not queues or len(queues) * len(ranges) > _MAX_RANGES:
        where = "1" if queue is None else "queue = :queue"
        if state is not None:
            where += " AND (" + " OR ".join(f"(state = '{st}'{c})" for st, c in ranges) + ")"
        sql = f"SELECT {JOB_COLS} FROM wh_jobs WHERE {where}{also} {_ORDER} "
        return sql + "LIMIT :limit OFFSET :offset", {}
    parts = [
        f"SELECT * FROM (SELECT {JOB_COLS} FROM wh_jobs INDEXED BY wh_jobs_queue_state_created "
        f"WHERE queue = {q} AND state = '{st}'{cond}{also} {_ORDER} LIMIT :limit + :offset)"
        for q in queues
        for st, cond in ranges
    ]
    return " UNION ALL ".join(parts) + f" {_ORDER} LIMIT :limit OFFSET :offset", named
