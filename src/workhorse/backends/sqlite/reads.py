"""Read-only questions about wh_jobs that need no decoding: counts, due times, query SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from workhorse.backends.sqlite.rows import to_json
from workhorse.backends.sqlite.statements import JOB_COLS
from workhorse.job import JobKey, JobState

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


_ORDER = "ORDER BY created_at DESC, id DESC"
# Past this many queues with failed jobs a listing of failed jobs reads their index as one.
_MAX_RANGES = 200
# Every queue with failed jobs, seeking from one to the next in their index (one seek each).
_NEXT = "SELECT queue FROM wh_jobs INDEXED BY wh_jobs_failed WHERE state = 'failed'"
_QUEUES = f"""WITH RECURSIVE queues(name) AS (
    SELECT ({_NEXT} ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT ({_NEXT} AND queue > name ORDER BY queue LIMIT 1) FROM queues
    WHERE name IS NOT NULL)
SELECT name FROM queues WHERE name IS NOT NULL"""


def query_select(
    conn: sqlite3.Connection,
    queue: str | None,
    state: JobState | None,
    task: str | None,
    now: float,
    after: tuple[float, str] | JobKey | None = None,
) -> tuple[str, dict[str, Any]]:
    """The SELECT of ``query`` and its parameters; the caller adds :limit and :offset.
    ``after``: the anchor's stored (time, id), or its JobKey when it is gone.

    Listings read indexes a claim or a finish does not write (docs/decisions.md): a queue's
    page wh_jobs_queue_created, all queues wh_jobs_created, and failed jobs (the dashboard's
    rare, sought state) wh_jobs_failed, merged per queue, so a page of failed jobs reads at
    most offset + limit entries per queue whatever else the table holds."""
    params: dict[str, Any] = {"queue": queue, "task": task, "now": now}
    where: list[str] = []
    if task is not None:
        where.append("task = :task")
    if isinstance(after, tuple):  # the anchor's stored time: exact
        where.append("(created_at, id) < (:at, :aid)")
        params |= {"at": after[0], "aid": after[1]}
    elif after is not None:  # the anchor is gone: its time as a reader saw it (microseconds)
        where.append("(created_at < :low OR (created_at < :high AND id < :aid))")
        low, high = after.span()
        params |= {"low": low, "high": high, "aid": after.id}
    st = None if state is None else JobState(state)
    if st is JobState.FAILED:
        names = [queue] if queue is not None else [r[0] for r in conn.execute(_QUEUES)]
        if len(names) <= _MAX_RANGES:
            params |= {f"q{i}": name for i, name in enumerate(names)}
            also = "".join(f" AND {w}" for w in where)
            parts = [
                f"SELECT * FROM (SELECT {JOB_COLS} FROM wh_jobs INDEXED BY wh_jobs_failed "
                f"WHERE state = 'failed' AND queue = :q{i}{also} {_ORDER} "
                "LIMIT :limit + :offset)"
                for i in range(len(names))
            ] or [f"SELECT {JOB_COLS} FROM wh_jobs WHERE 0"]
            return " UNION ALL ".join(parts) + f" {_ORDER} LIMIT :limit OFFSET :offset", params
    if queue is not None:
        where.append("queue = :queue")
    if st is JobState.QUEUED:
        where.append("(state = 'queued' OR (state = 'scheduled' AND run_at <= :now))")
    elif st is JobState.SCHEDULED:
        where.append("state = 'scheduled' AND run_at > :now")
    elif st is not None:
        where.append(f"state = '{st.value}'")
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    # Active jobs are few (the workers' slots): read them all from the lease index and sort,
    # rather than walk every job by creation time looking for them (the overview's read).
    table = "wh_jobs INDEXED BY wh_jobs_lease" if st is JobState.ACTIVE else "wh_jobs"
    return f"SELECT {JOB_COLS} FROM {table}{cond} {_ORDER} LIMIT :limit OFFSET :offset", params
