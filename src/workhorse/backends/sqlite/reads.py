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
    now = clock()
    out: dict[str, dict[str, int]] = {}
    for q in queues or ():
        out[q] = dict.fromkeys(JobState, 0)
    sql = (
        "SELECT queue, CASE WHEN state = 'scheduled' AND run_at <= ? THEN 'queued' "
        "ELSE state END AS st, count(*) FROM wh_jobs"
    )
    args: list[Any] = [now]
    if queues is not None:
        sql += " WHERE queue IN (SELECT value FROM json_each(?))"
        args.append(to_json(queues))
    for queue, st, n in conn.execute(sql + " GROUP BY queue, st", args):
        row = out.setdefault(queue, dict.fromkeys(JobState, 0))
        row[JobState(st)] += n
    return out


def query_select(
    queue: str | None,
    state: JobState | None,
    task: str | None,
    now: float,
    after: tuple[float, str] | JobKey | None = None,
) -> tuple[str, list[Any]]:
    """The SELECT of ``query`` and its arguments, to which LIMIT and OFFSET are appended.
    ``after``: the anchor's stored (time, id), or its JobKey when it is gone."""
    where: list[str] = []
    args: list[Any] = []
    if queue is not None:
        where.append("queue = ?")
        args.append(queue)
    if task is not None:
        where.append("task = ?")
        args.append(task)
    if state is not None:
        st = JobState(state)
        if st is JobState.QUEUED:
            where.append("(state = 'queued' OR (state = 'scheduled' AND run_at <= ?))")
            args.append(now)
        elif st is JobState.SCHEDULED:
            where.append("state = 'scheduled' AND run_at > ?")
            args.append(now)
        else:
            where.append("state = ?")
            args.append(st.value)
    if isinstance(after, tuple):  # the anchor's stored time: exact
        where.append("(created_at, id) < (?, ?)")
        args += list(after)
    elif after is not None:  # the anchor is gone: its time as a reader saw it (microseconds)
        where.append("(CAST(round(created_at * 1000000) AS INTEGER), id) < (?, ?)")
        args += [round(after.created * 1e6), after.id]
    sql = f"SELECT {JOB_COLS} FROM wh_jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    return sql, args
