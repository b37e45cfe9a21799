"""Coordination tables: keys with a TTL (wh_kv), counters, and worker heartbeats.

Each function runs on the database thread with the connection and the backend's clock.
The kv store shares wh_kv with set_if_absent; an expired row counts as absent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from workhorse.backends.sqlite.rows import to_json
from workhorse.job import WorkerInfo

Clock = Callable[[], float]


def set_if_absent(
    conn: sqlite3.Connection,
    clock: Clock,
    key: str,
    value: str,
    ttl: float | None,
    unless: str | None = None,
) -> bool:
    if unless is not None and kv_get(conn, clock, unless) is not None:
        return False
    now = clock()
    cur = conn.execute(
        "INSERT INTO wh_kv (key, value, expires_at) VALUES (:key, :value, :expires) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "expires_at = excluded.expires_at "
        "WHERE wh_kv.expires_at IS NOT NULL AND wh_kv.expires_at <= :now",
        {"key": key, "value": value, "now": now, "expires": None if ttl is None else now + ttl},
    )
    return cur.rowcount == 1


def claim_unless(
    conn: sqlite3.Connection, now: float, key: str, value: str, unless: str | None
) -> bool:
    """set_if_absent without a ttl in one statement: False when ``key`` is live or while
    ``unless`` is (the caller tells which apart only when it needs to)."""
    cur = conn.execute(CLAIM_UNLESS, {"key": key, "value": value, "unless": unless, "now": now})
    return cur.rowcount == 1


# A live ``unless`` makes the value NULL, a row OR IGNORE skips, because an INSERT ... SELECT
# reading wh_kv builds a temporary b-tree for its row first (docs/profiles.md, issue 15).
CLAIM_UNLESS = (
    "INSERT OR IGNORE INTO wh_kv (key, value, expires_at) VALUES (:key, CASE WHEN EXISTS ("
    "SELECT 1 FROM wh_kv WHERE key = :unless AND (expires_at IS NULL OR expires_at > :now)) "
    "THEN NULL ELSE :value END, NULL) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
    "WHERE wh_kv.expires_at IS NOT NULL AND wh_kv.expires_at <= :now"
)


def kv_get(conn: sqlite3.Connection, clock: Clock, key: str) -> str | None:
    row = conn.execute(
        "SELECT value FROM wh_kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
        (key, clock()),
    ).fetchone()
    return None if row is None else str(row[0])


def kv_get_many(conn: sqlite3.Connection, clock: Clock, keys: Sequence[str]) -> dict[str, str]:
    now, out = clock(), {}
    for i in range(0, len(keys), 500):  # within SQLite's bound on a statement's variables
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        sql = (
            f"SELECT key, value FROM wh_kv WHERE key IN ({marks}) "
            "AND (expires_at IS NULL OR expires_at > ?)"
        )
        out.update({str(k): str(v) for k, v in conn.execute(sql, (*chunk, now))})
    return out


def kv_set(conn: sqlite3.Connection, clock: Clock, key: str, value: str, ttl: float | None) -> None:
    expires = None if ttl is None else clock() + ttl
    conn.execute(
        "INSERT OR REPLACE INTO wh_kv (key, value, expires_at) VALUES (?, ?, ?)",
        (key, value, expires),
    )


def kv_delete(conn: sqlite3.Connection, clock: Clock, key: str, value: str | None) -> bool:
    # One statement, not a read first (a run's end deletes its live entry in its last
    # step's finish); an expired row, absent to every read, stays for the sweep.
    cur = conn.execute(
        "DELETE FROM wh_kv WHERE key = :key AND (expires_at IS NULL OR expires_at > :now) "
        "AND (:value IS NULL OR value = :value)",
        {"key": key, "value": value, "now": clock()},
    )
    return cur.rowcount == 1


def kv_extend(
    conn: sqlite3.Connection, clock: Clock, held: Mapping[str, str], ttl: float
) -> set[str]:
    now = clock()
    ours = set()
    for key, value in held.items():
        cur = conn.execute(
            "UPDATE wh_kv SET expires_at = ? WHERE key = ? AND value = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (now + ttl, key, value, now),
        )
        if cur.rowcount:
            ours.add(key)
    return ours


def kv_scan(
    conn: sqlite3.Connection,
    clock: Clock,
    prefix: str,
    limit: int | None = None,
    reverse: bool = False,
    after: str | None = None,
) -> dict[str, str]:
    # A key range keeps the primary key index in use; substr() checks it exactly, on
    # bytes (length() of text stops at a NUL character). Text compares as its bytes.
    sql = (
        "SELECT key, value FROM wh_kv WHERE substr(CAST(key AS BLOB), 1, "
        "length(CAST(:p AS BLOB))) = CAST(:p AS BLOB) "
        "AND (expires_at IS NULL OR expires_at > :now)"
    )
    params: dict[str, Any] = {"p": prefix, "now": clock()}
    if prefix and ord(prefix[-1]) < 0x7F:  # the next character is plain ASCII too
        sql += " AND key >= :p AND key < :end"
        params["end"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if after is not None:
        sql += " AND key < :after" if reverse else " AND key > :after"
        params["after"] = after
    sql += " ORDER BY key DESC" if reverse else " ORDER BY key"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return {str(k): str(v) for k, v in conn.execute(sql, params)}


def counter_add(conn: sqlite3.Connection, clock: Clock, key: str, n: int, ttl: float | None) -> int:
    now = clock()
    # SET expressions see the old row; an expired counter starts again from zero.
    (value,) = conn.execute(
        "INSERT INTO wh_counters (key, value, expires_at) VALUES (:key, :n, :expires) "
        "ON CONFLICT (key) DO UPDATE SET "
        "value = CASE WHEN expires_at IS NOT NULL AND expires_at <= :now THEN :n "
        "ELSE value + :n END, "
        "expires_at = CASE WHEN expires_at IS NULL OR expires_at <= :now THEN :expires "
        "ELSE expires_at END "
        "RETURNING value",
        {"key": key, "n": n, "now": now, "expires": None if ttl is None else now + ttl},
    ).fetchone()
    return int(value)


def counter_add_many(
    conn: sqlite3.Connection, clock: Clock, items: Sequence[tuple[str, int, float | None]]
) -> list[int]:
    return [counter_add(conn, clock, key, n, ttl) for key, n, ttl in items]


def sweep(conn: sqlite3.Connection, clock: Clock) -> None:
    """Drop expired keys, counters and worker records so the tables stay small."""
    now = clock()
    conn.execute("DELETE FROM wh_kv WHERE expires_at <= ?", (now,))
    conn.execute("DELETE FROM wh_counters WHERE expires_at <= ?", (now,))
    conn.execute("DELETE FROM wh_workers WHERE expires_at <= ?", (now,))


def beat(conn: sqlite3.Connection, clock: Clock, info: WorkerInfo, ttl: float) -> None:
    now = clock()
    info.last_seen = now
    conn.execute(
        "INSERT OR REPLACE INTO wh_workers (id, info, expires_at) VALUES (?, ?, ?)",
        (
            info.id,
            to_json(
                {
                    "id": info.id,
                    "host": info.host,
                    "pid": info.pid,
                    "queues": info.queues,
                    "started_at": info.started_at,
                    "active": info.active,
                    "processed": info.processed,
                    "last_seen": info.last_seen,
                    "tasks": info.tasks,
                    "paused": info.paused,
                    "flows": info.flows,
                }
            ),
            now + ttl,
        ),
    )


def workers(conn: sqlite3.Connection, clock: Clock) -> list[WorkerInfo]:
    rows = conn.execute("SELECT info FROM wh_workers WHERE expires_at > ? ORDER BY id", (clock(),))
    return [WorkerInfo(**orjson.loads(r[0])) for r in rows]
