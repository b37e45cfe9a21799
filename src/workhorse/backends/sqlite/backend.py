"""The SQLite backend: one WAL file that several processes on one machine share.

Every call runs on one thread owned by the backend object, so the event loop never waits on
the disk. Writes take the write lock up front (``BEGIN IMMEDIATE``): two processes never
deadlock upgrading a read lock, and a busy database is retried, never reported to the caller.

Internally a job delayed into the future is ``scheduled``; a claim first promotes the due
ones to ``queued``, so the claim index holds only jobs that can run now and a claim stays one
index probe however many jobs wait for later. The public state is derived as in memory:
``scheduled`` is a queued job whose ``run_at`` is still ahead.

SQLite has no cross-process notification. Waiting polls ``os.stat`` of the ``-wal`` file
(every commit changes it) on the event loop, plus an in-process signal for this object's
own writes; the store is only read again when something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson

from workhorse import codec
from workhorse.backends.base import Backend, Capabilities, RenewResult
from workhorse.backends.quarantine import quarantine_error, quarantined
from workhorse.errors import BackendError, ConfigError
from workhorse.job import (
    FINISHED_STATES,
    MAX_STALLS,
    EnqueueResult,
    Event,
    Job,
    JobState,
    Lease,
    NewJob,
    Outcome,
    WorkerInfo,
    to_datetime,
)
from workhorse.urls import check_options

T = TypeVar("T")

# 2: a dedup key is unique per queue; 3: keep_for and holds; 4: finished jobs by queue;
# 5: stalls and max_stalls
SCHEMA_VERSION = 5

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
    max_stalls INTEGER NOT NULL DEFAULT {MAX_STALLS}
);
CREATE INDEX IF NOT EXISTS wh_jobs_ready
    ON wh_jobs (queue, priority DESC, run_at, seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS wh_jobs_scheduled
    ON wh_jobs (queue, run_at) WHERE state = 'scheduled';
CREATE INDEX IF NOT EXISTS wh_jobs_lease
    ON wh_jobs (expires_at) WHERE state = 'active';
DROP INDEX IF EXISTS wh_jobs_dedup;
CREATE UNIQUE INDEX IF NOT EXISTS wh_jobs_dedup_queue ON wh_jobs (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'scheduled', 'active');
CREATE INDEX IF NOT EXISTS wh_jobs_finished
    ON wh_jobs (state, finished_at, seq) WHERE finished_at IS NOT NULL;
-- Retention's count is per queue: each queue's newest are one range here.
CREATE INDEX IF NOT EXISTS wh_jobs_finished_queue
    ON wh_jobs (state, queue, finished_at, seq) WHERE finished_at IS NOT NULL;
-- The retention sweep finds jobs with their own keep_for here, not by scanning a state.
CREATE INDEX IF NOT EXISTS wh_jobs_own_keep ON wh_jobs (state, finished_at)
    WHERE keep_for IS NOT NULL;
CREATE INDEX IF NOT EXISTS wh_jobs_created ON wh_jobs (created_at);

CREATE TABLE IF NOT EXISTS wh_events (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    job_id TEXT,
    task TEXT,
    queue TEXT,
    data TEXT,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS wh_paused (queue TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS wh_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS wh_counters (
    key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL
);
CREATE TABLE IF NOT EXISTS wh_workers (id TEXT PRIMARY KEY, info TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS wh_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO wh_meta (key, value) VALUES ('seq', 0);
"""

_LIVE = "('queued', 'scheduled', 'active')"
# A job whose own keep_for decides its retention: it has one, and no run() caller holds it.
_OWN_RETENTION = "keep_for IS NOT NULL AND holds = 0"
_JOB_COLS = (
    "id, task, queue, state, data, priority, attempts, max_attempts, created_at, run_at, "
    "started_at, finished_at, progress, result, error, logs, timeout, worker, expires_at, "
    "dedup_key, keep_for, stalls, max_stalls"
)
# Appends the JSON array :logs to the stored array without parsing either (both compact).
_APPEND_LOGS = (
    "logs = CASE WHEN :logs IS NULL THEN logs WHEN logs IS NULL THEN :logs "
    "ELSE substr(logs, 1, length(logs) - 1) || ',' || substr(:logs, 2) END"
)
_OWNED = "WHERE id = :id AND state = 'active' AND token = :token"

_SQL_PROMOTE = (
    "UPDATE wh_jobs SET state = 'queued' "
    "WHERE state = 'scheduled' AND queue = :queue AND run_at <= :now"
)
_SQL_CLAIM = """
UPDATE wh_jobs SET state = 'active', attempts = attempts + 1, worker = :worker,
    token = lower(hex(randomblob(8))), started_at = :now,
    expires_at = :now + coalesce(lease, :lease)
WHERE rid IN (
    SELECT rid FROM wh_jobs INDEXED BY wh_jobs_ready
    WHERE state = 'queued' AND queue = :queue AND run_at <= :now
      AND NOT EXISTS (SELECT 1 FROM wh_paused WHERE queue = :queue)
    ORDER BY priority DESC, run_at, seq LIMIT :limit)
RETURNING id, token, task, queue, data, attempts, max_attempts, timeout,
    coalesce(lease, :lease), created_at, priority, run_at, seq
"""
_SQL_INSERT = (
    "INSERT INTO wh_jobs (id, task, queue, state, data, priority, max_attempts, timeout, "
    "lease, dedup_key, created_at, run_at, seq, keep_for, holds, max_stalls) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_EVENT = "INSERT INTO wh_events (type, job_id, task, queue, data, at) VALUES (?, ?, ?, ?, ?, ?)"
_SQL_END = (
    f"UPDATE wh_jobs SET state = :state, result = :result, error = :error, "
    f"finished_at = :now, token = NULL, expires_at = NULL, {_APPEND_LOGS} {_OWNED} "
    "RETURNING attempts"
)
_SQL_REQUEUE = (
    f"UPDATE wh_jobs SET state = :state, run_at = :run_at, seq = :seq, token = NULL, "
    f"expires_at = NULL, worker = NULL, cancel_requested = 0, error = :error, "
    f"attempts = attempts - :refund, {_APPEND_LOGS} {_OWNED} RETURNING attempts"
)
_SQL_RENEW = f"UPDATE wh_jobs SET expires_at = :expires {_OWNED} RETURNING cancel_requested"

_PURGE_CHUNK = 2000
_FINISHED_IN = "FROM wh_jobs WHERE state = :state AND finished_at IS NOT NULL"
# The queues with finished jobs of a state, found by seeking from one to the next in the
# per-queue index instead of reading every row.
_FINISHED_QUEUES = f"""queues(name) AS (
    SELECT (SELECT queue {_FINISHED_IN} ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue {_FINISHED_IN} AND queue > name ORDER BY queue LIMIT 1)
    FROM queues WHERE name IS NOT NULL)"""
# Each queue's finished jobs of a state past its newest :keep: everything at or before its
# (:keep + 1)-th newest (none when it has no more than :keep), one index range per queue.
# MATERIALIZED and CROSS JOIN fix the plan: each edge is found once, then its range read.
_PAST_KEEP = f"""
WITH RECURSIVE {{queues}}, edges(name, rid) AS MATERIALIZED (
    SELECT name, (SELECT rid {_FINISHED_IN} AND queue = name
                  ORDER BY finished_at DESC, seq DESC LIMIT 1 OFFSET :keep)
    FROM queues WHERE name IS NOT NULL)
SELECT j.rid, j.keep_for, j.holds FROM edges CROSS JOIN wh_jobs e ON e.rid = edges.rid
CROSS JOIN wh_jobs j ON j.state = :state AND j.queue = edges.name AND j.finished_at IS NOT NULL
    AND (j.finished_at, j.seq) <= (e.finished_at, e.seq)"""

_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

EventRow = tuple[str, str | None, str | None, str | None, str | None, float]


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _event_row(
    type_: str, job_id: str, task: str, queue: str, now: float, data: dict[str, Any] | None = None
) -> EventRow:
    return (type_, job_id, task, queue, _json(data) if data else None, now)


# Columns holding JSON, by position in _JOB_COLS; a row whose column does not parse is
# quarantined (see SQLiteBackend._salvage).
_JSON_COLUMNS = (("data", 4), ("progress", 12), ("result", 13), ("error", 14), ("logs", 15))
# Numeric columns: (name, position, what a quarantined row shows instead of garbage).
_NUMBER_COLUMNS = (
    ("priority", 5, 0), ("attempts", 6, 0), ("max_attempts", 7, 1), ("created_at", 8, 0.0),
    ("run_at", 9, 0.0), ("started_at", 10, None), ("finished_at", 11, None),
    ("timeout", 16, None), ("expires_at", 18, None), ("keep_for", 20, None),
    ("stalls", 21, 0), ("max_stalls", 22, MAX_STALLS),
)  # fmt: skip
# Columns a quarantine resets to the salvaged value (their bytes are in the error).
_RESETTABLE = (
    ("progress", 12), ("result", 13), ("logs", 15), ("priority", 5), ("attempts", 6),
    ("max_attempts", 7), ("created_at", 8), ("run_at", 9), ("started_at", 10),
    ("timeout", 16), ("stalls", 21), ("max_stalls", 22),
)  # fmt: skip
_STORED_STATES = frozenset(("queued", "scheduled", "active", "completed", "failed", "cancelled"))


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` → an absolute file path."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not sep:
        raise ConfigError(f"not an SQLite URL: {url!r}; use sqlite:///path/to.db")
    rest = rest.split("?", 1)[0]
    if not rest.startswith("/") or len(rest) < 2:
        raise ConfigError(
            f"SQLite URL {url!r} has no file path; use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    path = rest[1:]
    if path == ":memory:":
        raise ConfigError(
            "an in-memory SQLite database cannot be shared between connections; "
            "use memory:// for a store inside one process, or a file path"
        )
    return os.path.abspath(path)


# The longest step between two looks at the -wal file while nothing changes (seconds): the
# default poll_interval, so an idle wait without inotify adds no more than a worker's poll.
_IDLE_POLL = 1.0


class _Signal:
    """An in-process wake-up: ``fire`` releases every waiter at once."""

    __slots__ = ("gen", "waiters")

    def __init__(self) -> None:
        self.gen = 0
        self.waiters: set[asyncio.Future[None]] = set()

    def fire(self) -> None:
        self.gen += 1
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)


def _release(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_IN_MODIFY, _IN_Q_OVERFLOW = 0x2, 0x4000
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000


class _WalWatch:
    """Linux inotify on the database folder: any process's write to the ``-wal`` file
    fires ``signal`` at once, so waiters need not poll. Elsewhere ``start`` returns None
    and the backend polls ``os.stat`` instead. The folder is watched, not the file, so a
    ``-wal`` file deleted and made again (last connection closed) is still seen."""

    def __init__(self, fd: int, name: bytes, signal: _Signal) -> None:
        self.fd, self.name, self.signal = fd, name, signal

    @classmethod
    def start(cls, path: str, signal: _Signal) -> _WalWatch | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd < 0:
                return None
            folder = os.path.dirname(path).encode()
            if libc.inotify_add_watch(fd, folder, _IN_MODIFY) < 0:
                os.close(fd)
                return None
        except (OSError, AttributeError):
            return None
        return cls(fd, os.path.basename(path).encode() + b"-wal", signal)

    def on_readable(self) -> None:
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            self.signal.fire()
            return
        pos, hit = 0, False
        while pos + 16 <= len(buf):  # struct inotify_event: wd, mask, cookie, len, name
            mask = int.from_bytes(buf[pos + 4 : pos + 8], "little")
            size = int.from_bytes(buf[pos + 12 : pos + 16], "little")
            name = buf[pos + 16 : pos + 16 + size].rstrip(b"\0")
            hit = hit or name == self.name or bool(mask & _IN_Q_OVERFLOW)
            pos += 16 + size
        if hit:
            self.signal.fire()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class SQLiteBackend(Backend):
    capabilities = Capabilities(durable=True, multi_process=True, multi_machine=False)

    def __init__(
        self,
        url: str = "sqlite:///.workhorse/workhorse.db",
        *,
        clock: Callable[[], float] = time.time,
        max_events: int | None = None,
        lock_timeout: float | None = None,
        poll: float | None = None,
    ) -> None:
        self.url = url
        self.path = path_from_url(url)
        params = dict(parse_qsl(url.partition("?")[2]))
        check_options(params, ("max_events", "lock_timeout", "poll", "watch"), "SQLite")
        self._clock = clock
        # The durable event log keeps this many newest events.
        self.max_events = max_events or int(params.get("max_events", 100_000))
        # How long a write waits for another process's write transaction before failing.
        self.lock_timeout = lock_timeout or float(params.get("lock_timeout", 60.0))
        # How often a waiter looks at the -wal file for another process's commits.
        self.poll = poll or float(params.get("poll", 0.001))
        # Linux: inotify wakes waiters on another process's commit at once (watch=false:
        # polling only, e.g. where a folder's inotify events are not delivered).
        self.watch = params.get("watch", "true").lower() not in ("0", "false", "no", "off")
        self._wal = self.path + "-wal"
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._open_lock: asyncio.Lock | None = None
        self._work = _Signal()  # this object wrote something a worker may claim
        self._done = _Signal()  # this object finished (or cancelled) a job
        self._wal_changed = _Signal()  # inotify saw some process write the -wal file
        self._watch: _WalWatch | None = None
        self._watch_loop: asyncio.AbstractEventLoop | None = None
        self._events_since_trim = 0
        self._last_sweep = 0.0

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        if self._conn is not None:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._conn is not None:
                return
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workhorse-sqlite")
            try:
                conn = await asyncio.get_running_loop().run_in_executor(executor, self._connect)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor, self._conn = executor, conn

    async def close(self) -> None:
        conn, executor = self._conn, self._executor
        if conn is None or executor is None:
            return
        self._conn = self._executor = None
        self._unwatch()
        try:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        finally:
            executor.shutdown(wait=False)

    async def drop(self) -> None:
        """Delete every row (the test fixture's clean-up); the file stays."""
        if self._conn is None:
            return

        def wipe(conn: sqlite3.Connection) -> None:
            for table in (
                "wh_jobs",
                "wh_events",
                "wh_paused",
                "wh_kv",
                "wh_counters",
                "wh_workers",
            ):
                conn.execute(f"DELETE FROM {table}")

        await self._write(wipe)

    async def now(self) -> float:
        return self._clock()

    def _connect(self) -> sqlite3.Connection:
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=0.05, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise BackendError(
                f"cannot open the SQLite file {self.path}: {exc}; check that the folder "
                "is writable or set WORKHORSE_URL to another sqlite:/// path"
            ) from exc
        try:
            # busy_timeout stays short: SQLite's own back-off grows to 100 ms sleeps, so
            # longer waits are retried here with short sleeps (see _retry).
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 50")
            conn.execute("PRAGMA cache_size = -16000")
            conn.execute("PRAGMA temp_store = MEMORY")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                self._tx_on(conn, self._create_schema, version)
            elif version > SCHEMA_VERSION:
                raise BackendError(
                    f"{self.path} was written by a newer workhorse (schema {version}, this "
                    f"one knows {SCHEMA_VERSION}); upgrade workhorse"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection, version: int) -> None:
        if 1 <= version < 3:  # a file of an older version: its table lacks the new columns
            conn.execute("ALTER TABLE wh_jobs ADD COLUMN keep_for REAL")
            conn.execute("ALTER TABLE wh_jobs ADD COLUMN holds INTEGER NOT NULL DEFAULT 0")
        if 1 <= version < 5:
            conn.execute("ALTER TABLE wh_jobs ADD COLUMN stalls INTEGER NOT NULL DEFAULT 0")
            conn.execute(
                f"ALTER TABLE wh_jobs ADD COLUMN max_stalls INTEGER NOT NULL DEFAULT {MAX_STALLS}"
            )
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- the database thread ---------------------------------------------------------
    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` until it gets past a lock held by another connection."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.0005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"{self.path} stayed locked for {self.lock_timeout:g}s: another "
                        "process holds a write transaction; find it, or raise lock_timeout "
                        "(sqlite:///...?lock_timeout=120)"
                    ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.02)

    def _tx_on(self, conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry(attempt)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._conn
        if conn is None:
            raise BackendError("the SQLite backend was closed while a call was queued")
        return self._retry(lambda: fn(conn, *args))

    def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._conn
        if conn is None:
            raise BackendError("the SQLite backend was closed while a call was queued")
        return self._tx_on(conn, fn, *args)

    async def _call(self, runner: Callable[..., T], fn: Callable[..., T], *args: Any) -> T:
        executor = self._executor
        if executor is None:
            raise BackendError(
                f"the SQLite backend for {self.path} is not open; call await backend.open() "
                "(or use the app, which opens it)"
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, runner, fn, *args)
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite error on {self.path}: {exc}") from exc

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one write transaction on the database thread."""
        return await self._call(self._tx, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._in_thread, fn, *args)

    def _add_events(self, conn: sqlite3.Connection, rows: Sequence[EventRow]) -> None:
        if not rows:
            return
        conn.executemany(_SQL_EVENT, rows)
        self._events_since_trim += len(rows)
        if self._events_since_trim >= 1000:
            # Amortised: one range delete per thousand events keeps the log bounded.
            self._events_since_trim = 0
            conn.execute(
                "DELETE FROM wh_events WHERE id <= (SELECT max(id) FROM wh_events) - ?",
                (self.max_events,),
            )

    @staticmethod
    def _next_seq(conn: sqlite3.Connection, n: int) -> int:
        """Reserve ``n`` enqueue sequence numbers; returns the first."""
        (last,) = conn.execute(
            "UPDATE wh_meta SET value = value + ? WHERE key = 'seq' RETURNING value", (n,)
        ).fetchone()
        return int(last) - n + 1

    @staticmethod
    def _public(state: str, run_at: float, now: float) -> JobState:
        if state == "scheduled" and run_at <= now:
            return JobState.QUEUED
        return JobState(state)

    def _to_job(self, conn: sqlite3.Connection, row: Sequence[Any], now: float) -> Job:
        try:
            return self._decode(row, now)
        except (ValueError, TypeError):
            return self._salvage(conn, row, now)

    def _decode(self, row: Sequence[Any], now: float) -> Job:
        (
            id_,
            task,
            queue,
            state,
            data,
            priority,
            attempts,
            max_attempts,
            created_at,
            run_at,
            started_at,
            finished_at,
            progress,
            result,
            error,
            logs,
            timeout,
            worker,
            expires_at,
            dedup_key,
            keep_for,
            stalls,
            max_stalls,
        ) = row
        return Job(
            id=id_,
            task=task,
            queue=queue,
            state=self._public(state, run_at, now),
            data=codec.loads(data),
            priority=priority,
            attempts=attempts,
            max_attempts=max_attempts,
            created_at=to_datetime(created_at),  # type: ignore[arg-type]
            run_at=to_datetime(run_at),  # type: ignore[arg-type]
            started_at=to_datetime(started_at),
            finished_at=to_datetime(finished_at),
            progress=None if progress is None else orjson.loads(progress),
            result=None if result is None else codec.loads(result),
            error=None if error is None else orjson.loads(error),
            logs=[] if logs is None else orjson.loads(logs),
            timeout=timeout,
            worker=worker,
            lease_expires_at=to_datetime(expires_at),
            dedup_key=dedup_key,
            keep_for=keep_for,
            stalls=stalls,
            max_stalls=max_stalls,
        )

    def _salvage(self, conn: sqlite3.Connection, row: Sequence[Any], now: float) -> Job:
        """The slow path for a row that does not decode (written by something else, or
        damaged): quarantine it as failed, once, with the raw bytes of each bad column in
        the error, and return what can be read. The data column keeps its raw bytes."""
        fixed = list(row)
        reasons: dict[str, str] = {}
        raw: dict[str, bytes] = {}
        for name, i in _JSON_COLUMNS:
            value = row[i]
            if value is None:
                continue
            try:
                orjson.loads(value)
            except (ValueError, TypeError) as exc:
                reasons[name] = str(exc)
                raw[name] = value if isinstance(value, bytes) else str(value).encode()
                fixed[i] = b"null" if name == "data" else None
        if row[3] not in _STORED_STATES:
            reasons["state"] = f"unknown state {row[3]!r}"
            raw["state"] = str(row[3]).encode()
        for name, i, default in _NUMBER_COLUMNS:
            value = row[i]
            if value is not None and not isinstance(value, int | float):
                reasons[name] = f"not a number: {str(value)[:50]!r}"
                raw[name] = value if isinstance(value, bytes) else str(value).encode()
                fixed[i] = default
        previous = None if "error" in reasons or row[14] is None else orjson.loads(row[14])
        if reasons.keys() == {"data"} and quarantined(previous):
            return self._decode(fixed, now)  # done before: the data column keeps the bytes
        if not reasons:
            reasons["record"] = "a column holds a value of the wrong type"
            raw["record"] = repr(tuple(row)).encode()
        error = quarantine_error(raw, reasons, previous)
        # Bad columns are reset (their bytes are in the error) so the row reads from now on;
        # only the data column keeps its raw bytes.
        reset = {name: fixed[i] for name, i in _RESETTABLE if name in reasons}
        self._tx_on(conn, self._quarantine_tx, row[0], error, reset)
        fixed[3], fixed[11], fixed[14], fixed[18] = "failed", now, _json(error), None
        return self._decode(fixed, now)

    def _quarantine_tx(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        error: dict[str, Any],
        reset: dict[str, Any],
    ) -> None:
        now = self._clock()
        sets = "".join(f", {name} = ?" for name in reset)  # names from _RESETTABLE only
        row = conn.execute(
            f"UPDATE wh_jobs SET state = 'failed', error = ?, finished_at = ?, token = NULL, "
            f"expires_at = NULL, cancel_requested = 0{sets} WHERE id = ? "
            "RETURNING task, queue, attempts",
            (_json(error), now, *reset.values(), job_id),
        ).fetchone()
        if row is not None:
            self._add_events(
                conn,
                [_event_row("job.failed", job_id, row[0], row[1], now,
                            {"attempt": row[2], "error": error})],
            )  # fmt: skip

    # -- producing -------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        if not jobs:
            return []
        out = await self._write(self._enqueue_tx, jobs)
        self._work.fire()
        return out

    def _enqueue_tx(self, conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        now = self._clock()
        seq = self._next_seq(conn, len(jobs))
        out: list[EnqueueResult] = []
        plain: list[tuple[Any, ...]] = []
        events: list[EventRow] = []
        for i, new in enumerate(jobs):
            run_at = new.at if new.at is not None else now + new.delay
            state = "scheduled" if run_at > now else "queued"
            row = (
                new.id,
                new.task,
                new.queue,
                state,
                new.data,
                new.priority,
                new.max_attempts,
                new.timeout,
                new.lease,
                new.dedup_key,
                now,
                run_at,
                seq + i,
                new.keep_for,
                int(new.hold),
                new.max_stalls,
            )
            if new.dedup_key is None:
                plain.append(row)
            else:
                # Jobs with a key go one by one: a later job in this batch may share it.
                cur = conn.execute(_SQL_INSERT + " ON CONFLICT DO NOTHING", row)
                if cur.rowcount != 1:
                    out.append(self._duplicate(conn, new, now, events))
                    continue
            events.append(_event_row("job.queued", new.id, new.task, new.queue, now))
            out.append(EnqueueResult(new.id, True, self._public(state, run_at, now)))
        if plain:
            conn.executemany(_SQL_INSERT, plain)
        self._add_events(conn, events)
        return out

    def _duplicate(
        self, conn: sqlite3.Connection, new: NewJob, now: float, events: list[EventRow]
    ) -> EnqueueResult:
        """The live job holding ``new.dedup_key``; with ``replace``, a not yet started one
        takes the new payload and its due time starts over (a debounce)."""
        live = conn.execute(
            f"SELECT id, state, run_at, task, queue FROM wh_jobs "
            f"WHERE queue = ? AND dedup_key = ? AND state IN {_LIVE}",
            (new.queue, new.dedup_key),
        ).fetchone()
        if live is None:
            raise BackendError(f"a job with id {new.id} already exists")
        id_, state, run_at, task, queue = live
        if new.hold:  # a run() caller waits for this job too
            conn.execute("UPDATE wh_jobs SET holds = holds + 1 WHERE id = ?", (id_,))
        if not new.replace or state == "active":
            return EnqueueResult(id_, False, self._public(state, run_at, now))
        run_at = new.at if new.at is not None else now + new.delay
        state = "scheduled" if run_at > now else "queued"
        conn.execute(
            "UPDATE wh_jobs SET data = ?, priority = ?, max_attempts = ?, max_stalls = ?, "
            "timeout = ?, state = ?, run_at = ?, seq = ?, token = NULL, expires_at = NULL, "
            "worker = NULL, cancel_requested = 0 WHERE id = ?",
            (
                new.data,
                new.priority,
                new.max_attempts,
                new.max_stalls,
                new.timeout,
                state,
                run_at,
                self._next_seq(conn, 1),
                id_,
            ),
        )
        events.append(_event_row("job.queued", id_, task, queue, now, {"replaced": True}))
        return EnqueueResult(id_, False, self._public(state, run_at, now), True)

    # -- consuming -------------------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        if limit <= 0 or not queues:
            return []
        return await self._write(self._claim_tx, queues, worker, limit, lease)

    def _claim_tx(
        self, conn: sqlite3.Connection, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        now = self._clock()
        leases: list[Lease] = []
        events: list[EventRow] = []
        for queue in queues:
            conn.execute(_SQL_PROMOTE, {"queue": queue, "now": now})
            rows = conn.execute(
                _SQL_CLAIM,
                {
                    "worker": worker,
                    "now": now,
                    "lease": lease,
                    "queue": queue,
                    "limit": limit - len(leases),
                },
            ).fetchall()
            # RETURNING does not keep the subquery's order.
            rows.sort(key=lambda r: (-r[10], r[11], r[12]))
            for r in rows:
                leases.append(Lease(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]))
                events.append(
                    _event_row(
                        "job.started", r[0], r[2], r[3], now, {"attempt": r[5], "worker": worker}
                    )
                )
            if len(leases) >= limit:
                break
        self._add_events(conn, events)
        return leases

    async def renew(self, leases: Sequence[Lease]) -> RenewResult:
        if not leases:
            return RenewResult(frozenset(), frozenset())
        return await self._write(self._renew_tx, leases)

    def _renew_tx(self, conn: sqlite3.Connection, leases: Sequence[Lease]) -> RenewResult:
        now = self._clock()
        lost, cancel = set(), set()
        for lease in leases:
            row = conn.execute(
                _SQL_RENEW,
                {
                    "expires": now + lease.lease,
                    "id": lease.job_id,
                    "token": lease.token,
                },
            ).fetchone()
            if row is None:
                lost.add(lease.job_id)
            elif row[0]:
                cancel.add(lease.job_id)
        return RenewResult(frozenset(lost), frozenset(cancel))

    async def finish(self, items: Sequence[tuple[Lease, Outcome]]) -> list[bool]:
        if not items:
            return []
        accepted, requeued = await self._write(self._finish_tx, items)
        self._done.fire()
        if requeued:
            self._work.fire()
        return accepted

    def _finish_tx(
        self, conn: sqlite3.Connection, items: Sequence[tuple[Lease, Outcome]]
    ) -> tuple[list[bool], bool]:
        now = self._clock()
        accepted: list[bool] = []
        events: list[EventRow] = []
        requeued = False
        for lease, outcome in items:
            kind = outcome.kind
            error = None if outcome.error is None else _json(outcome.error)
            params: dict[str, Any] = {
                "id": lease.job_id,
                "token": lease.token,
                "now": now,
                "error": error,
                "logs": _json(outcome.logs) if outcome.logs else None,
            }
            if kind == "retry":
                run_at = now + outcome.delay
                params.update(
                    state="scheduled" if run_at > now else "queued",
                    run_at=run_at,
                    seq=self._next_seq(conn, 1),
                    refund=1 if outcome.refund else 0,
                )
                row = conn.execute(_SQL_REQUEUE, params).fetchone()
            else:
                params.update(state=kind, result=outcome.result if kind == "completed" else None)
                row = conn.execute(_SQL_END, params).fetchone()
            if row is None:
                accepted.append(False)
                continue
            accepted.append(True)
            attempt = row[0]
            if kind == "completed":
                data: dict[str, Any] | None = {"attempt": attempt}
            elif kind == "retry":
                requeued = True
                data = {"attempt": attempt, "delay": outcome.delay, "error": outcome.error}
            elif kind == "failed":
                data = {"attempt": attempt, "error": outcome.error}
            else:
                data = None
            events.append(
                _event_row(
                    f"job.{_EVENT_OF[kind]}", lease.job_id, lease.task, lease.queue, now, data
                )
            )
        self._add_events(conn, events)
        return accepted, requeued

    async def update(
        self, lease: Lease, progress: Any = None, logs: Sequence[dict[str, Any]] = ()
    ) -> bool:
        return await self._write(self._update_tx, lease, progress, logs)

    def _update_tx(
        self, conn: sqlite3.Connection, lease: Lease, progress: Any, logs: Sequence[dict[str, Any]]
    ) -> bool:
        now = self._clock()
        row = conn.execute(
            f"UPDATE wh_jobs SET progress = coalesce(:progress, progress), {_APPEND_LOGS} "
            f"{_OWNED} RETURNING 1",
            {
                "id": lease.job_id,
                "token": lease.token,
                "progress": None if progress is None else _json(progress),
                "logs": _json(list(logs)) if logs else None,
            },
        ).fetchone()
        if row is None:
            return False
        if progress is not None:
            self._add_events(
                conn,
                [
                    _event_row(
                        "job.progress",
                        lease.job_id,
                        lease.task,
                        lease.queue,
                        now,
                        {"progress": progress},
                    )
                ],
            )
        return True

    async def reclaim_expired(self) -> list[str]:
        reclaimed = (
            await self._write(self._reclaim_tx) if await self._read(self._any_expired) else []
        )
        if reclaimed:
            self._work.fire()
            self._done.fire()
        now = time.monotonic()
        if now - self._last_sweep > 60:
            self._last_sweep = now
            await self._write(self._sweep_tx)
        return reclaimed

    def _any_expired(self, conn: sqlite3.Connection) -> bool:
        return (
            conn.execute(
                "SELECT 1 FROM wh_jobs WHERE state = 'active' AND expires_at <= ? LIMIT 1",
                (self._clock(),),
            ).fetchone()
            is not None
        )

    def _reclaim_tx(self, conn: sqlite3.Connection) -> list[str]:
        now = self._clock()
        # A try whose worker died spends the stall budget, not an attempt.
        rows = conn.execute(
            "UPDATE wh_jobs SET attempts = attempts - 1, stalls = stalls + 1 "
            "WHERE state = 'active' AND expires_at <= ? "
            "RETURNING id, task, queue, worker, stalls, max_stalls, cancel_requested",
            (now,),
        ).fetchall()
        events: list[EventRow] = []
        for id_, task, queue, worker, stalls, max_stalls, cancel_requested in rows:
            error: dict[str, Any] = {
                "type": "LeaseExpired",
                "message": f"worker {worker} stopped renewing its lease (stall "
                f"{stalls}, max_stalls {max_stalls})",
                "traceback": "",
            }
            events.append(
                _event_row(
                    "job.stalled", id_, task, queue, now, {"stalls": stalls, "worker": worker}
                )
            )
            if cancel_requested:
                state: str | None = "cancelled"
                events.append(_event_row("job.cancelled", id_, task, queue, now))
            elif stalls > max_stalls:
                state = "failed"
                error["message"] = (
                    f"killed its worker {stalls} times: the lease expired each time "
                    f"(max_stalls {max_stalls})"
                )
                events.append(
                    _event_row(
                        "job.failed", id_, task, queue, now, {"stalls": stalls, "error": error}
                    )
                )
            else:
                state = None
            if state is None:
                conn.execute(
                    "UPDATE wh_jobs SET state = 'queued', run_at = ?, seq = ?, token = NULL, "
                    "expires_at = NULL, worker = NULL, cancel_requested = 0, error = ? "
                    "WHERE id = ?",
                    (now, self._next_seq(conn, 1), _json(error), id_),
                )
            else:
                conn.execute(
                    "UPDATE wh_jobs SET state = ?, finished_at = ?, token = NULL, "
                    "expires_at = NULL, error = ? WHERE id = ?",
                    (state, now, _json(error), id_),
                )
        self._add_events(conn, events)
        return [r[0] for r in rows]

    def _sweep_tx(self, conn: sqlite3.Connection) -> None:
        """Drop expired keys, counters and worker records so the tables stay small."""
        now = self._clock()
        conn.execute("DELETE FROM wh_kv WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM wh_counters WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM wh_workers WHERE expires_at <= ?", (now,))

    # -- waiting -----------------------------------------------------------------------
    def _wal_mark(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self._wal)
        except FileNotFoundError:
            return (self._wal_changed.gen, 0, 0)
        return (self._wal_changed.gen, st.st_mtime_ns, st.st_size)

    def _watching(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start the inotify watch on first use; True when it serves ``loop``."""
        if self._watch_loop is None and self._conn is not None:
            self._watch_loop = loop  # tried once per open, even if inotify is missing
            if self.watch:
                self._watch = _WalWatch.start(self.path, self._wal_changed)
            if self._watch is not None:
                loop.add_reader(self._watch.fd, self._watch.on_readable)
        return self._watch is not None and self._watch_loop is loop

    def _unwatch(self) -> None:
        watch, loop = self._watch, self._watch_loop
        self._watch = self._watch_loop = None
        if watch is None or loop is None:
            return
        if not loop.is_closed():
            loop.remove_reader(watch.fd)
        watch.close()

    async def _changed(
        self, signal: _Signal, gen: int, mark: tuple[int, int, int], timeout: float
    ) -> str | None:
        """Sleep until ``signal`` fires ("local"), another commit lands ("wal"), or
        ``timeout`` passes (None). Without inotify, the -wal file's stat is polled on the
        loop, first every ``poll`` seconds, then twice as long each time up to
        ``_IDLE_POLL``: a commit just after a change is seen at once, and an idle wait costs
        a few looks, not one a millisecond. With inotify, the stat is only a safety net."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        every = max(self.poll, 0.05) if self._watching(loop) else self.poll
        while True:
            if signal.gen != gen:
                return "local"
            if self._wal_mark() != mark:
                return "wal"
            left = end - loop.time()
            if left <= 0:
                return None
            fut: asyncio.Future[None] = loop.create_future()
            signal.waiters.add(fut)
            self._wal_changed.waiters.add(fut)
            timer = loop.call_later(min(every, left), _release, fut)
            try:
                await fut
            finally:
                timer.cancel()
                signal.waiters.discard(fut)
                self._wal_changed.waiters.discard(fut)
            every = min(every * 2, max(self.poll, _IDLE_POLL))

    async def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        qs = list(queues)
        while True:
            gen, mark = self._work.gen, self._wal_mark()
            due_in = await self._read(self._due_in, qs)
            left = end - loop.time()
            if due_in is not None:
                left = min(left, due_in)
            if left <= 0:
                return
            woke = await self._changed(self._work, gen, mark, left)
            if woke != "wal":
                return  # our own write (worth a claim), a due time, or the timeout
            # Another connection committed: claim only if it left due work.

    def _due_in(self, conn: sqlite3.Connection, queues: Sequence[str]) -> float | None:
        """0 when a job is due in one of ``queues``, else seconds until the next one."""
        now = self._clock()
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

    async def wait_finished(self, ids: Collection[str], timeout: float) -> list[Job]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        wanted = _json(list(ids))
        while True:
            gen, mark = self._done.gen, self._wal_mark()
            done = await self._read(self._finished, wanted)
            left = end - loop.time()
            if done or left <= 0:
                return done
            if await self._changed(self._done, gen, mark, left) is None:
                return []

    def _finished(self, conn: sqlite3.Connection, wanted: str) -> list[Job]:
        now = self._clock()
        rows = conn.execute(
            f"SELECT {_JOB_COLS} FROM wh_jobs WHERE id IN (SELECT value FROM json_each(?)) "
            "AND state IN ('completed', 'failed', 'cancelled')",
            (wanted,),
        ).fetchall()
        return [self._to_job(conn, r, now) for r in rows]

    # -- inspecting and controlling ----------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        return await self._read(self._get, job_id)

    def _get(self, conn: sqlite3.Connection, job_id: str) -> Job | None:
        row = conn.execute(f"SELECT {_JOB_COLS} FROM wh_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._to_job(conn, row, self._clock())

    async def query(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        return await self._read(self._query, queue, state, task, limit, offset)

    def _query(
        self,
        conn: sqlite3.Connection,
        queue: str | None,
        state: JobState | None,
        task: str | None,
        limit: int,
        offset: int,
    ) -> list[Job]:
        now = self._clock()
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
        sql = f"SELECT {_JOB_COLS} FROM wh_jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        rows = conn.execute(sql, (*args, limit, offset)).fetchall()
        return [self._to_job(conn, r, now) for r in rows]

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        return await self._read(self._counts, None if queues is None else list(queues))

    def _counts(
        self, conn: sqlite3.Connection, queues: list[str] | None
    ) -> dict[str, dict[str, int]]:
        now = self._clock()
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
            args.append(_json(queues))
        for queue, st, n in conn.execute(sql + " GROUP BY queue, st", args):
            row = out.setdefault(queue, dict.fromkeys(JobState, 0))
            row[JobState(st)] += n
        return out

    async def cancel(self, job_id: str) -> JobState | None:
        result = await self._write(self._cancel_tx, job_id)
        if result is None:
            return None
        state, ended = result
        if ended:
            self._done.fire()
        return state

    def _cancel_tx(self, conn: sqlite3.Connection, job_id: str) -> tuple[JobState, bool] | None:
        now = self._clock()
        row = conn.execute(
            "SELECT state, run_at, task, queue FROM wh_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            return None
        state, run_at, task, queue = row
        if state in ("queued", "scheduled"):
            conn.execute(
                "UPDATE wh_jobs SET state = 'cancelled', finished_at = ?, token = NULL, "
                "expires_at = NULL WHERE id = ?",
                (now, job_id),
            )
            self._add_events(conn, [_event_row("job.cancelled", job_id, task, queue, now)])
            return JobState.CANCELLED, True
        if state == "active":
            conn.execute("UPDATE wh_jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return self._public(state, run_at, now), False

    async def retry(self, job_id: str) -> bool:
        ok = await self._write(self._retry_tx, job_id)
        if ok:
            self._work.fire()
        return ok

    def _retry_tx(self, conn: sqlite3.Connection, job_id: str) -> bool:
        now = self._clock()
        row = conn.execute(
            "SELECT state, dedup_key, task, queue FROM wh_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None or row[0] not in ("failed", "cancelled"):
            return False
        _, dedup_key, task, queue = row
        if (
            dedup_key is not None
            and conn.execute(
                f"SELECT 1 FROM wh_jobs WHERE queue = ? AND dedup_key = ? AND state IN {_LIVE}",
                (queue, dedup_key),
            ).fetchone()
        ):
            return False  # a newer live job holds the key
        conn.execute(
            "UPDATE wh_jobs SET state = 'queued', attempts = 0, stalls = 0, finished_at = NULL, "
            "error = NULL, result = NULL, run_at = ?, seq = ?, token = NULL, "
            "expires_at = NULL, worker = NULL, cancel_requested = 0 WHERE id = ?",
            (now, self._next_seq(conn, 1), job_id),
        )
        self._add_events(
            conn, [_event_row("job.queued", job_id, task, queue, now, {"retried": True})]
        )
        return True

    async def purge(
        self,
        *,
        states: Collection[JobState],
        older_than: float | None = None,
        keep_last: int | None = None,
        queue: str | None = None,
        retention: bool = False,
    ) -> int:
        finished = sorted(str(s) for s in set(states) & FINISHED_STATES)
        rules = [
            rule
            for rule, wanted in (
                ("own", retention),
                ("age", older_than is not None),
                ("rank", keep_last is not None),
            )
            if wanted
        ]
        cutoff = None if older_than is None else self._clock() - older_than
        deleted = 0
        # In chunks, each its own transaction: a large purge (retention after a long
        # stop) must not hold the write lock, or this object's thread, for seconds.
        for st in finished:
            for rule in rules:
                while True:
                    n = await self._write(
                        self._purge_tx, st, rule, cutoff, keep_last, queue, retention
                    )
                    deleted += n
                    if n < _PURGE_CHUNK:
                        break
        return deleted

    def _purge_tx(
        self,
        conn: sqlite3.Connection,
        state: str,
        rule: str,
        cutoff: float | None,
        keep_last: int | None,
        queue: str | None,
        retention: bool,
    ) -> int:
        in_queue = "" if queue is None else " AND queue = :queue"
        # In the retention sweep a job with its own keep_for, unheld, follows only that.
        not_own = f" AND NOT ({_OWN_RETENTION})" if retention else ""
        params: dict[str, Any] = {"state": state, "queue": queue, "chunk": _PURGE_CHUNK}
        if rule == "own":
            sql = (
                f"SELECT rid FROM wh_jobs WHERE state = :state AND {_OWN_RETENTION} "
                f"AND finished_at + keep_for <= :now{in_queue} LIMIT :chunk"
            )
            params["now"] = self._clock()
        elif rule == "age":
            sql = (
                "SELECT rid FROM wh_jobs WHERE state = :state AND finished_at IS NOT NULL "
                f"AND finished_at <= :cutoff{in_queue}{not_own} LIMIT :chunk"
            )
            params["cutoff"] = cutoff
        else:
            # Counted per queue and deleted in this one write transaction; ranking after
            # the age cut is the same (the old ones were the tail). Jobs with their own
            # keep_for count toward keep_last but are not what it removes.
            queues = _FINISHED_QUEUES if queue is None else "queues(name) AS (SELECT :queue)"
            past = _PAST_KEEP.format(queues=queues)
            sql = f"SELECT rid FROM ({past}) WHERE 1{not_own} LIMIT :chunk"
            params["keep"] = keep_last
        cur = conn.execute(f"DELETE FROM wh_jobs WHERE rid IN ({sql})", params)
        return int(cur.rowcount)

    async def release(self, ids: Collection[str]) -> None:
        if ids:
            await self._write(self._release_tx, _json(list(ids)))

    def _release_tx(self, conn: sqlite3.Connection, ids: str) -> None:
        conn.execute(
            "UPDATE wh_jobs SET holds = max(holds - 1, 0) "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
        conn.execute(
            f"DELETE FROM wh_jobs WHERE id IN (SELECT value FROM json_each(?)) "
            f"AND state IN ('completed', 'failed', 'cancelled') AND {_OWN_RETENTION} "
            f"AND finished_at + keep_for <= ?",
            (ids, self._clock()),
        )

    async def pause(self, queue: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO wh_paused (queue) VALUES (?)", (queue,)
            )
        )

    async def resume(self, queue: str) -> None:
        await self._write(
            lambda conn: conn.execute("DELETE FROM wh_paused WHERE queue = ?", (queue,))
        )
        self._work.fire()

    async def paused(self) -> set[str]:
        return await self._read(
            lambda conn: {r[0] for r in conn.execute("SELECT queue FROM wh_paused")}
        )

    # -- coordination ------------------------------------------------------------------
    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        return await self._write(self._set_if_absent_tx, key, value, ttl)

    def _set_if_absent_tx(
        self, conn: sqlite3.Connection, key: str, value: str, ttl: float | None
    ) -> bool:
        now = self._clock()
        cur = conn.execute(
            "INSERT INTO wh_kv (key, value, expires_at) VALUES (:key, :value, :expires) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "expires_at = excluded.expires_at "
            "WHERE wh_kv.expires_at IS NOT NULL AND wh_kv.expires_at <= :now",
            {"key": key, "value": value, "now": now, "expires": None if ttl is None else now + ttl},
        )
        return cur.rowcount == 1

    # The kv store shares wh_kv with set_if_absent; an expired row counts as absent.
    async def kv_get(self, key: str) -> str | None:
        return await self._read(self._kv_get, key)

    def _kv_get(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute(
            "SELECT value FROM wh_kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, self._clock()),
        ).fetchone()
        return None if row is None else str(row[0])

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._write(self._kv_set_tx, key, value, ttl)

    def _kv_set_tx(self, conn: sqlite3.Connection, key: str, value: str, ttl: float | None) -> None:
        expires = None if ttl is None else self._clock() + ttl
        conn.execute(
            "INSERT OR REPLACE INTO wh_kv (key, value, expires_at) VALUES (?, ?, ?)",
            (key, value, expires),
        )

    async def kv_delete(self, key: str, value: str | None = None) -> bool:
        return await self._write(self._kv_delete_tx, key, value)

    def _kv_delete_tx(self, conn: sqlite3.Connection, key: str, value: str | None) -> bool:
        now = self._clock()
        held = conn.execute("SELECT value, expires_at FROM wh_kv WHERE key = ?", (key,)).fetchone()
        if held is None:
            return False
        if held[1] is not None and held[1] <= now:
            conn.execute("DELETE FROM wh_kv WHERE key = ?", (key,))
            return False  # expired: absent, as kv_get would say
        if value is not None and held[0] != value:
            return False
        conn.execute("DELETE FROM wh_kv WHERE key = ?", (key,))
        return True

    async def kv_extend(self, held: Mapping[str, str], ttl: float) -> set[str]:
        return await self._write(self._kv_extend_tx, held, ttl) if held else set()

    def _kv_extend_tx(
        self, conn: sqlite3.Connection, held: Mapping[str, str], ttl: float
    ) -> set[str]:
        now = self._clock()
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

    async def kv_scan(self, prefix: str) -> dict[str, str]:
        return await self._read(self._kv_scan, prefix)

    def _kv_scan(self, conn: sqlite3.Connection, prefix: str) -> dict[str, str]:
        # A key range keeps the primary key index in use; substr() checks it exactly, on
        # bytes (length() of text stops at a NUL character).
        sql = (
            "SELECT key, value FROM wh_kv WHERE substr(CAST(key AS BLOB), 1, "
            "length(CAST(:p AS BLOB))) = CAST(:p AS BLOB) "
            "AND (expires_at IS NULL OR expires_at > :now)"
        )
        params: dict[str, Any] = {"p": prefix, "now": self._clock()}
        if prefix and ord(prefix[-1]) < 0x7F:  # the next character is plain ASCII too
            sql += " AND key >= :p AND key < :end"
            params["end"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return {str(k): str(v) for k, v in conn.execute(sql, params)}

    async def counter_add(self, key: str, n: int, ttl: float | None = None) -> int:
        return await self._write(self._counter_add_tx, key, n, ttl)

    def _counter_add_tx(self, conn: sqlite3.Connection, key: str, n: int, ttl: float | None) -> int:
        now = self._clock()
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

    # -- events and workers ------------------------------------------------------------
    async def publish(self, events: Sequence[Event]) -> None:
        if events:
            await self._write(self._publish_tx, events)

    def _publish_tx(self, conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        now = self._clock()
        self._add_events(
            conn,
            [
                (
                    ev.type,
                    ev.job_id,
                    ev.task,
                    ev.queue,
                    _json(ev.data) if ev.data else None,
                    ev.at or now,
                )
                for ev in events
            ],
        )

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        return await self._read(self._events, after, limit)

    @staticmethod
    def _events(conn: sqlite3.Connection, after: int, limit: int) -> list[Event]:
        rows = conn.execute(
            "SELECT type, job_id, task, queue, data, at, id FROM wh_events WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [
            Event(t, j, tk, q, {} if d is None else orjson.loads(d), at, i)
            for t, j, tk, q, d, at, i in rows
        ]

    async def beat(self, info: WorkerInfo, ttl: float) -> None:
        await self._write(self._beat_tx, info, ttl)

    def _beat_tx(self, conn: sqlite3.Connection, info: WorkerInfo, ttl: float) -> None:
        now = self._clock()
        info.last_seen = now
        conn.execute(
            "INSERT OR REPLACE INTO wh_workers (id, info, expires_at) VALUES (?, ?, ?)",
            (
                info.id,
                _json(
                    {
                        "id": info.id,
                        "host": info.host,
                        "pid": info.pid,
                        "queues": info.queues,
                        "started_at": info.started_at,
                        "active": info.active,
                        "processed": info.processed,
                        "last_seen": info.last_seen,
                    }
                ),
                now + ttl,
            ),
        )

    async def workers(self) -> list[WorkerInfo]:
        return await self._read(self._workers)

    def _workers(self, conn: sqlite3.Connection) -> list[WorkerInfo]:
        rows = conn.execute(
            "SELECT info FROM wh_workers WHERE expires_at > ? ORDER BY id", (self._clock(),)
        )
        return [WorkerInfo(**orjson.loads(r[0])) for r in rows]

    async def remove_worker(self, worker_id: str) -> None:
        await self._write(
            lambda conn: conn.execute("DELETE FROM wh_workers WHERE id = ?", (worker_id,))
        )


_EVENT_OF = {
    "completed": "completed",
    "failed": "failed",
    "retry": "retrying",
    "cancelled": "cancelled",
}

__all__ = ["SQLiteBackend", "path_from_url"]
