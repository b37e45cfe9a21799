"""Job counts per (queue, state), kept by the transactions that change states (schema 7).

Each write transaction that moves jobs between states adds its net change here, one row per
(queue, state) touched, at its end: no trigger (one ran per changed row and cost the worker
8 % CPU per job, docs/profiles.md), and one writer at a time, so a single row per (queue,
state) makes no one wait. The stored state "scheduled" is counted as stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

# (queue, state it left or None, state it entered or None, how many jobs)
Move = tuple[str, str | None, str | None, int]

_ADD = (
    "INSERT INTO wh_counts (queue, state, n) VALUES (?, ?, ?) "
    "ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n"
)
FILL = (
    "INSERT INTO wh_counts (queue, state, n) "
    "SELECT queue, state, count(*) FROM wh_jobs GROUP BY 1, 2"
)


def write(conn: sqlite3.Connection, moves: Iterable[Move]) -> None:
    """Add the net change of ``moves`` inside the caller's transaction."""
    net: dict[tuple[str, str], int] = {}
    for queue, was, now, n in moves:
        if was == now or not n:
            continue
        if was is not None:
            net[queue, was] = net.get((queue, was), 0) - n
        if now is not None:
            net[queue, now] = net.get((queue, now), 0) + n
    rows = [(queue, state, n) for (queue, state), n in net.items() if n]
    if len(rows) == 1:  # an enqueue's or a lone finish's: no executemany's list
        conn.execute(_ADD, rows[0])
    elif rows:
        conn.executemany(_ADD, rows)
