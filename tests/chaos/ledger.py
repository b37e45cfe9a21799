"""The independent ledger: an append-only SQLite file the test tasks write themselves.

workhorse never touches it. Every attempt of a job appends ``start``, ``effect`` and
``finish`` rows with its pid, attempt number and wall-clock time; the harness appends
``enqueued`` rows for what producers stored and ``kill``/``stop``/``cont``/``heal`` rows
for the faults it injects. Lost jobs, duplicate runs and recovery times are counted from
these rows only, never from the store under test.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    event TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at REAL NOT NULL,
    info TEXT NOT NULL DEFAULT ''
)
"""


def connect(path: str | Path) -> sqlite3.Connection:
    # Autocommit: each row is its own transaction, committed before the call returns, so a
    # SIGKILL right after a write keeps it (the OS holds the page even if the process dies).
    conn = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(_SCHEMA)
    return conn


class Writer:
    """One per process; ``write`` is one INSERT, a few tens of microseconds. Sync tasks
    write from their threads: one connection, so one write at a time."""

    def __init__(self, path: str | Path) -> None:
        self.conn = connect(path)
        self.pid = os.getpid()
        self.lock = threading.Lock()

    def write(self, job: str, event: str, attempt: int = 0, info: str = "") -> None:
        with self.lock:
            self.conn.execute(
                "INSERT INTO ledger (job, attempt, event, pid, at, info) VALUES (?, ?, ?, ?, ?, ?)",
                (job, attempt, event, self.pid, time.time(), info),
            )

    def write_many(self, jobs: Iterable[str], event: str, info: str = "") -> None:
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO ledger (job, attempt, event, pid, at, info) VALUES (?, 0, ?, ?, ?, ?)",
                [(j, event, self.pid, now, info) for j in jobs],
            )

    def fault(self, event: str, pid: int, info: str = "") -> float:
        """A fault the harness injected into process ``pid`` (or -1 for the store)."""
        now = time.time()
        self.conn.execute(
            "INSERT INTO ledger (job, attempt, event, pid, at, info) VALUES ('-', 0, ?, ?, ?, ?)",
            (event, pid, now, info),
        )
        return now

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True, slots=True)
class Row:
    job: str
    attempt: int
    event: str
    pid: int
    at: float
    info: str


class Reader:
    def __init__(self, path: str | Path) -> None:
        self.conn = connect(path)

    def close(self) -> None:
        self.conn.close()

    def rows(self, event: str | None = None) -> list[Row]:
        sql = "SELECT job, attempt, event, pid, at, info FROM ledger"
        args: tuple[str, ...] = ()
        if event is not None:
            sql += " WHERE event = ?"
            args = (event,)
        return [Row(*r) for r in self.conn.execute(sql + " ORDER BY seq", args)]

    def count(self, event: str) -> int:
        """Distinct jobs with at least one ``event`` row."""
        (n,) = self.conn.execute(
            "SELECT COUNT(DISTINCT job) FROM ledger WHERE event = ?", (event,)
        ).fetchone()
        return int(n)

    def by_job(self) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = defaultdict(list)
        for row in self.rows():
            if row.job != "-":
                out[row.job].append(row)
        return out
