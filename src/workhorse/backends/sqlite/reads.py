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
# Listings across queues read one range per queue, this many per statement.
_MAX_RANGES = 200
_CREATED_AT = JOB_COLS.split(", ").index("created_at")
# Per state: the indexes (with their conditions) whose rows of that state tell which queues
# hold one, so a listing across queues skips a queue without any (a queued job may be
# stored as a scheduled one whose time has come).
_FINISHED = "finished_at IS NOT NULL AND state = "
_HOLDERS: dict[JobState | None, list[tuple[str, str]]] = {
    JobState.QUEUED: [
        ("wh_jobs_ready", "state = 'queued'"),
        ("wh_jobs_scheduled", "state = 'scheduled'"),
    ],
    JobState.SCHEDULED: [("wh_jobs_scheduled", "state = 'scheduled'")],
    JobState.COMPLETED: [("wh_jobs_finished_queue", _FINISHED + "'completed'")],
    JobState.CANCELLED: [("wh_jobs_finished_queue", _FINISHED + "'cancelled'")],
}


def _queues(conn: sqlite3.Connection, index: str, cond: str) -> list[str]:
    """Every queue with a row in ``index``, seeking from one queue to the next (one seek
    each), not from the counters: a count written around the backend must not hide jobs."""
    step = f"SELECT queue FROM wh_jobs INDEXED BY {index} WHERE {cond}"
    return [
        r[0]
        for r in conn.execute(
            f"""WITH RECURSIVE queues(name) AS (
                SELECT ({step} ORDER BY queue LIMIT 1)
                UNION ALL
                SELECT ({step} AND queue > name ORDER BY queue LIMIT 1) FROM queues
                WHERE name IS NOT NULL)
            SELECT name FROM queues WHERE name IS NOT NULL"""
        )
    ]


def listing(
    conn: sqlite3.Connection,
    queue: str | None,
    state: JobState | None,
    task: str | None,
    now: float,
    after: tuple[float, str] | JobKey | None,
    limit: int,
    offset: int,
) -> list[Any]:
    """The page's rows (JOB_COLS), newest first; several statements merged here when the
    queues are more than one statement's ranges."""
    selects, params = query_select(conn, queue, state, task, now, after)
    params |= {"limit": limit, "offset": offset}
    if len(selects) == 1:
        return conn.execute(selects[0], params).fetchall()
    rows = [row for sql in selects for row in conn.execute(sql, params)]
    rows.sort(key=lambda row: (row[_CREATED_AT], row[0]), reverse=True)
    return rows[offset : offset + limit]


def query_select(
    conn: sqlite3.Connection,
    queue: str | None,
    state: JobState | None,
    task: str | None,
    now: float,
    after: tuple[float, str] | JobKey | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The SELECTs of ``query`` and their parameters; the caller adds :limit and :offset.
    One statement is the page; several (one per _MAX_RANGES queues) each give their newest
    :limit + :offset, which ``listing`` merges. ``after``: the anchor's stored (time, id),
    or its JobKey when it is gone.

    Listings read indexes a claim or a finish does not write (docs/decisions.md): a queue's
    page wh_jobs_queue_created, and failed jobs (the dashboard's rare, sought state)
    wh_jobs_failed; across queues, one range of that index per queue merged, so a page
    reads at most offset + limit entries per queue whatever else the table holds."""
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
    if st is JobState.QUEUED:
        where.append("(state = 'queued' OR (state = 'scheduled' AND run_at <= :now))")
    elif st is JobState.SCHEDULED:
        where.append("state = 'scheduled' AND run_at > :now")
    elif st is not None:
        where.append(f"state = '{st.value}'")
    if st is JobState.ACTIVE:
        # Active jobs are few (the workers' slots): read them all from the lease index and
        # sort, rather than walk every job by creation time looking for them.
        if queue is not None:
            where.append("queue = :queue")
        cond = " AND ".join(where)
        return [
            f"SELECT {JOB_COLS} FROM wh_jobs INDEXED BY wh_jobs_lease WHERE {cond} "
            f"{_ORDER} LIMIT :limit OFFSET :offset"
        ], params
    index, has = (
        ("wh_jobs_failed", "state = 'failed'")
        if st is JobState.FAILED
        else ("wh_jobs_queue_created", "1")
    )
    if queue is not None:
        names = [queue]
    else:  # only the queues holding a job of the state: a range without one is walked whole
        holders = _HOLDERS.get(st, [(index, has)])
        names = sorted({name for where in holders for name in _queues(conn, *where)})
    params |= {f"q{i}": name for i, name in enumerate(names)}
    also = "".join(f" AND {w}" for w in where)
    parts = [
        f"SELECT * FROM (SELECT {JOB_COLS} FROM wh_jobs INDEXED BY {index} "
        f"WHERE {has} AND queue = :q{i}{also} {_ORDER} LIMIT :limit + :offset)"
        for i in range(len(names))
    ] or [f"SELECT {JOB_COLS} FROM wh_jobs WHERE 0"]
    if len(parts) <= _MAX_RANGES:
        return [" UNION ALL ".join(parts) + f" {_ORDER} LIMIT :limit OFFSET :offset"], params
    return [
        " UNION ALL ".join(parts[i : i + _MAX_RANGES]) + f" {_ORDER} LIMIT :limit + :offset"
        for i in range(0, len(parts), _MAX_RANGES)
    ], params
