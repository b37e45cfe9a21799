"""The database thread: one SQLite connection on one thread, write transactions, retry on lock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from workhorse.backends.sqlite import schema
from workhorse.errors import BackendError, ConfigError

T = TypeVar("T")

_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


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


_Write = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


def _answer(batch: list[_Write], answers: list[tuple[bool, Any]]) -> None:
    for (_, _, done), (ok, value) in zip(batch, answers, strict=True):
        if done.done():
            continue
        if ok:
            done.set_result(value)
        else:
            done.set_exception(value)


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


class Database:
    """One connection to the file at ``path`` and the one thread that uses it, so the event
    loop never waits on the disk. Writes take the write lock up front (``BEGIN IMMEDIATE``):
    two processes never deadlock upgrading a read lock, and a busy database is retried for
    up to ``lock_timeout`` seconds, never reported to the caller."""

    def __init__(self, path: str, lock_timeout: float) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._open_lock: asyncio.Lock | None = None
        # Writes waiting for the database thread; it takes all of them at once (see _drain).
        self._writes: list[_Write] = []
        self._draining = False
        self._mutex = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

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
        try:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        finally:
            executor.shutdown(wait=False)

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
            # longer waits are retried here with short sleeps (see retry).
            self.retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 50")
            # 2 MB (SQLite's default) holds the hot pages (the queues' index ends, the
            # rows in flight); 16 MB only kept finished jobs' pages a worker never reads
            # again, ~5 MB of its RSS at 30,000 jobs (the OS caches the file anyway).
            conn.execute("PRAGMA cache_size = -2000")
            conn.execute("PRAGMA temp_store = MEMORY")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < schema.SCHEMA_VERSION:
                self.tx_on(conn, schema.upgrade, version)
            elif version > schema.SCHEMA_VERSION:
                raise BackendError(
                    f"{self.path} was written by a newer workhorse (schema {version}, this "
                    f"one knows {schema.SCHEMA_VERSION}); upgrade workhorse"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    # -- on the database thread --------------------------------------------------------
    def retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` until it gets past a lock held by another connection."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.0005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"{self.path} stayed locked for {self.lock_timeout:g}s: another "
                        "process holds a write transaction; find it, or raise lock_timeout "
                        "(sqlite:///...?lock_timeout=120)"
                    ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.02)

    def tx_on(self, conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one write transaction, retried while the file is locked."""

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

        return self.retry(attempt)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._conn
        if conn is None:
            raise BackendError("the SQLite backend was closed while a call was queued")
        return self.retry(lambda: fn(conn, *args))

    # -- from the event loop -----------------------------------------------------------
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

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a write transaction on the database thread, answered
        once it is committed. Writes that wait while the thread is busy share one
        transaction (group commit): one commit and one hop to the thread for all of them."""
        executor = self._executor
        if executor is None:
            raise BackendError(
                f"the SQLite backend for {self.path} is not open; call await backend.open() "
                "(or use the app, which opens it)"
            )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        with self._mutex:
            self._writes.append((fn, args, done))
            start, self._draining = not self._draining, True
        if start:
            try:
                executor.submit(self._drain, loop)
            except RuntimeError:  # closed meanwhile: nothing will take the queued writes
                self._drain_closed()
        try:
            return cast(T, await done)
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite error on {self.path}: {exc}") from exc

    def _drain_closed(self) -> None:
        with self._mutex:
            batch, self._writes, self._draining = self._writes, [], False
        closed = BackendError("the SQLite backend was closed while a call was queued")
        _answer(batch, [(False, closed)] * len(batch))

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the database thread: the writes queued so far, in one transaction. If one of
        them raises, the transaction is rolled back and each runs alone, so only the one
        that failed gets its error (writes may run again: a busy file retries them too)."""
        with self._mutex:
            batch, self._writes, self._draining = self._writes, [], False
        batch = [w for w in batch if not w[2].done()]  # a caller that gave up: not written
        if not batch:
            return
        answers: list[tuple[bool, Any]] = []
        conn = self._conn
        if conn is None:
            closed = BackendError("the SQLite backend was closed while a call was queued")
            answers = [(False, closed)] * len(batch)
        elif len(batch) > 1:
            try:
                results = self.tx_on(conn, lambda c: [fn(c, *args) for fn, args, _ in batch])
                answers = [(True, r) for r in results]
            except BackendError as exc:  # the file stayed locked: so it would be for each
                answers = [(False, exc)] * len(batch)
            except Exception:
                answers = []
        if conn is not None and not answers:
            for fn, args, _ in batch:
                try:
                    answers.append((True, self.tx_on(conn, fn, *args)))
                except BaseException as exc:
                    answers.append((False, exc))
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
            loop.call_soon_threadsafe(_answer, batch, answers)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the database thread, outside a write transaction."""
        return await self._call(self._in_thread, fn, *args)
