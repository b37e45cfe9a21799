"""The durable event log of the SQLite backend: rows to append, the bounded log, reading it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import orjson

from workhorse.backends.sqlite.rows import to_json
from workhorse.backends.sqlite.statements import (
    EVENT,
    NUMBERED_EVENT,
    NUMBERED_RUN_EVENT,
    RUN_EVENT,
    insert_rows,
)
from workhorse.events import HOLD_FACTOR, HOLD_PREFIX, run_of
from workhorse.job import Event

EventRow = tuple[str, str | None, str | None, str | None, str | None, float]
RunEventRow = tuple[str, str | None, str | None, str | None, str | None, float, str | None]
NumberedRow = tuple[int, str, str | None, str | None, str | None, str | None, float]
NumberedRunRow = tuple[int, str, str | None, str | None, str | None, str | None, float, str | None]


def event_row(
    type_: str, job_id: str, task: str, queue: str, now: float, data: dict[str, Any] | None = None
) -> EventRow:
    return (type_, job_id, task, queue, to_json(data) if data else None, now)


def published_rows(events: Sequence[Event], now: float) -> list[RunEventRow]:
    """Rows for events a caller publishes, with their run; one without a time happened
    ``now``."""
    return [
        (
            ev.type,
            ev.job_id,
            ev.task,
            ev.queue,
            to_json(ev.data) if ev.data else None,
            ev.at or now,
            run_of(ev),
        )
        for ev in events
    ]


def with_published(
    rows: Sequence[EventRow], inserts: Sequence[tuple[int, Sequence[RunEventRow]]]
) -> list[RunEventRow]:
    """``rows`` with each of ``inserts`` (its index in ``rows``, ascending, and the rows
    that go before that one) put in place, every row with its run (None for a job's)."""
    out: list[RunEventRow] = []
    done = 0
    for at, published in inserts:
        out += [(*row, None) for row in rows[done:at]]
        out += published
        done = at
    out += [(*row, None) for row in rows[done:]]
    return out


def next_id(conn: sqlite3.Connection) -> int:
    """The id of the next event this write transaction appends with ``EventLog.add(first=)``.

    A job's seq (its place among equal due times) is the id of the event that queued it:
    one counter, kept by the log, and no row written for it. Ids never go back: the trim
    keeps the newest, and wh_meta's seq (the counter of files before schema 9) is a floor."""
    (last,) = conn.execute(_LAST).fetchone()
    return int(last) + 1


_LAST = (
    "SELECT max(coalesce((SELECT max(id) FROM wh_events), 0), "
    "coalesce((SELECT value FROM wh_meta WHERE key = 'seq'), 0))"
)


class EventLog:
    """Appends to wh_events and keeps its ``max_events`` newest rows."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max(1, max_events)  # the newest stays: ids never go back
        self._since_trim = 0

    def add(
        self,
        conn: sqlite3.Connection,
        rows: Sequence[EventRow] | Sequence[RunEventRow],
        first: int | None = None,
    ) -> None:
        """Append ``rows``; with ``first`` (from next_id), numbered from it, so an id a job
        row already holds (queued_event, seq) is its event's, or the transaction fails on the
        taken id."""
        if first is not None:
            numbered: list[Any] = [(first + i, *row) for i, row in enumerate(rows)]
            self.add_numbered(conn, numbered)
        elif rows:
            insert_rows(conn, RUN_EVENT if len(rows[0]) == 7 else EVENT, rows)
            self._trim(conn, len(rows))

    def add_numbered(
        self, conn: sqlite3.Connection, rows: Sequence[NumberedRow] | Sequence[NumberedRunRow]
    ) -> None:
        """Append rows that carry their ids (from next_id, in order)."""
        if rows:
            insert_rows(conn, NUMBERED_EVENT if len(rows[0]) == 7 else NUMBERED_RUN_EVENT, rows)
            self._trim(conn, len(rows))

    def _trim(self, conn: sqlite3.Connection, added: int) -> None:
        self._since_trim += added
        if self._since_trim >= 1000:
            # Amortised: one range delete per thousand events keeps the log bounded.
            self._since_trim = 0
            # Events from a hook group's floor on stay, up to HOLD_FACTOR * max_events.
            conn.execute(
                "DELETE FROM wh_events WHERE id <= (SELECT max(id) FROM wh_events) - ? "
                "AND (id <= (SELECT max(id) FROM wh_events) - ? OR id < coalesce(("
                "SELECT min(CAST(value AS INTEGER)) FROM wh_kv WHERE key >= ? AND key < ? "
                "AND (expires_at IS NULL OR expires_at > ?)), 9223372036854775807))",
                (
                    self.max_events,
                    self.max_events * HOLD_FACTOR,
                    HOLD_PREFIX,
                    HOLD_PREFIX[:-1] + ";",  # the keys that start with the prefix
                    time.time(),
                ),
            )


_COLS = "SELECT type, job_id, task, queue, data, at, id FROM wh_events"


def read_run(conn: sqlite3.Connection, run: str, after: int, limit: int) -> list[Event]:
    """The events published for flow run ``run``, by the run index."""
    rows = conn.execute(
        "SELECT type, job_id, task, queue, data, at, id FROM wh_events "
        "WHERE run = ? AND id > ? ORDER BY id LIMIT ?",
        (run, after, limit),
    )
    return [
        Event(t, j, tk, q, {} if d is None else orjson.loads(d), at, i)
        for t, j, tk, q, d, at, i in rows
    ]


def read(conn: sqlite3.Connection, after: int, limit: int) -> list[Event]:
    rows = conn.execute(
        "SELECT type, job_id, task, queue, data, at, id FROM wh_events WHERE id > ? "
        "ORDER BY id LIMIT ?",
        (after, limit),
    )
    return _decoded(rows)


def read_job(conn: sqlite3.Connection, job_id: str, limit: int) -> list[Event]:
    """The job's newest ``limit`` events, oldest first: one range of wh_events_job, and the
    job.queued event its enqueue wrote and the job.completed its finish wrote, named by its
    row (schema.py). A flow run's events are not a job's (Backend.job_events)."""
    rows = conn.execute(
        f"SELECT * FROM ({_COLS} WHERE job_id = :job AND run IS NULL AND (type <> 'job.queued' "
        "OR data IS NOT NULL) AND type <> 'job.completed' ORDER BY id DESC LIMIT :limit) "
        f"UNION ALL {_COLS} WHERE id = (SELECT queued_event FROM wh_jobs WHERE id = :job) "
        f"UNION ALL {_COLS} WHERE id = (SELECT completed_event FROM wh_jobs WHERE id = :job) "
        "ORDER BY id DESC LIMIT :limit",
        {"job": job_id, "limit": limit},
    )
    return _decoded(rows)[::-1]


def _decoded(rows: sqlite3.Cursor) -> list[Event]:
    return [
        Event(t, j, tk, q, {} if d is None else orjson.loads(d), at, i)
        for t, j, tk, q, d, at, i in rows
    ]
