"""LISTEN connections per backend object, turning NOTIFY into woken waiters.

Three channels per schema: ``<schema>.jobs`` (payload: a queue that got work),
``<schema>.done`` (payload: comma-separated ids of jobs that ended, or ``*`` when the
list would not fit) and ``<schema>.record`` (payload: the whole finished record of a job
that a ``run()`` caller holds, when it fits). A listener LISTENs only to the channels of
its kind: a worker's to jobs, a waiting caller's to done and record, so neither process is
woken by the other's notifications. Waiters register *before* they look at the table, so
a notification that arrives between the look and the wait is never lost. When the
connection drops, the listener reconnects with a backoff and wakes every waiter (what
happened meanwhile is unknown); until then the callers' timeouts are the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("workhorse.postgres")


class Listener:
    """``finishes``: listen for finished jobs (done and record), else for new work."""

    def __init__(self, conninfo: str, schema: str, safe_url: str, finishes: bool = False) -> None:
        self.conninfo = conninfo
        self.jobs_channel = f"{schema}.jobs"
        self.done_channel = f"{schema}.done"
        self.record_channel = f"{schema}.record"
        self.channels = (
            (self.record_channel, self.done_channel) if finishes else (self.jobs_channel,)
        )
        self.safe_url = safe_url
        self._jobs: dict[asyncio.Future[None], frozenset[str]] = {}
        self._heard: dict[str, int] = {}  # notifications per queue on the jobs channel
        # Per waiter: the ids it waits for, and the records heard for them (id: payload).
        self._done: dict[asyncio.Future[None], tuple[frozenset[str], dict[str, str]]] = {}
        # Jobs a caller enqueued while this listened and will wait for next (``expect``):
        # per id, the ``connects`` it was expected under, whether its id was heard on the
        # done channel, and its record if one was heard.
        self._expected: dict[str, _Expected] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.connected = asyncio.Event()
        self.connects = 0  # how many times a LISTEN was (re-)established

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether the LISTEN connection is kept (up, or coming back after a drop)."""
        return self._task is not None and not self._task.done()

    async def start(self, wait: float = 5.0) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="workhorse-pg-listener")
        # Not fatal if slow: polling covers the gap, but normally it is up in a few ms.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.connected.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()
        self._wake_all()

    async def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection (tests terminate it)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            except (psycopg.OperationalError, OSError) as exc:
                log.warning(
                    "LISTEN connection to %s failed (%s); retrying in %.2fs",
                    self.safe_url,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._conn = conn
            try:
                for channel in self.channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self.connects += 1
                self.connected.set()
                delay = 0.05
                # Anything may have happened while we were not listening.
                self._wake_all()
                async for note in conn.notifies():
                    self._dispatch(note.channel, note.payload)
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("LISTEN connection to %s lost (%s); reconnecting", self.safe_url, exc)
            finally:
                self.connected.clear()
                self._conn = None
                with contextlib.suppress(Exception):
                    await conn.close()
            self._wake_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- waiters -----------------------------------------------------------------------
    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == self.jobs_channel:
            self._heard[payload] = self._heard.get(payload, 0) + 1
            for fut, queues in list(self._jobs.items()):
                if payload in queues and not fut.done():
                    fut.set_result(None)
        elif channel == self.done_channel:
            ids = None if payload == "*" else payload.split(",")
            if self._expected:
                for job_id in self._expected if ids is None else ids:
                    early = self._expected.get(job_id)
                    if early is not None:
                        early.done = True
            for fut, (wanted, _) in list(self._done.items()):
                if fut.done():
                    continue
                if ids is None or not wanted.isdisjoint(ids):
                    fut.set_result(None)
        elif channel == self.record_channel:
            # '<id> <record as JSON>': ids hold no space (see finish's record CTE).
            job_id = payload.partition(" ")[0]
            early = self._expected.get(job_id)
            if early is not None:
                early.record = payload
            for fut, (wanted, records) in list(self._done.items()):
                if job_id in wanted:
                    # Kept even if the waiter was woken already: its done ids and this
                    # record come in the same read, in either order.
                    records[job_id] = payload
                    if not fut.done():
                        fut.set_result(None)

    def _wake_all(self) -> None:
        for fut in (*self._jobs, *self._done):
            if not fut.done():
                fut.set_result(None)

    def heard(self, queue: str) -> tuple[int, int] | None:
        """Which connection listens and how many notifications of ``queue`` it has heard:
        equal marks mean nothing was heard between them. None while not listening."""
        if not self.connected.is_set():
            return None
        return self.connects, self._heard.get(queue, 0)

    def watch_jobs(self, queues: Collection[str]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs[fut] = frozenset(queues)
        return fut

    def watch_done(self, ids: Collection[str]) -> tuple[asyncio.Future[None], dict[str, str]]:
        """A future woken when one of ``ids`` ends, and the records heard for them."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        records: dict[str, str] = {}
        self._done[fut] = (frozenset(ids), records)
        return fut, records

    def expect(self, ids: Collection[str]) -> bool:
        """Remember what this connection hears about ``ids`` from now on, for a caller about
        to enqueue them and wait: its first wait need not read their rows (``take``).
        False (and nothing remembered) while the connection is not listening."""
        if not self.connected.is_set():
            return False
        if len(self._expected) + len(ids) > _EXPECT_MAX:
            # Callers that never waited (an error between enqueue and wait): the oldest go.
            for job_id in list(self._expected)[: len(self._expected) // 2 + len(ids)]:
                del self._expected[job_id]
        for job_id in ids:
            self._expected[job_id] = _Expected(self.connects)
        return True

    def unexpect(self, ids: Collection[str]) -> None:
        for job_id in ids:
            self._expected.pop(job_id, None)

    def take(self, ids: Collection[str]) -> tuple[list[str], dict[str, str]]:
        """Of ``ids``, those whose rows a wait must read (never expected, or expected
        under a connection since lost, or heard as done without their record), and the
        records heard for the others. Their expectations are used up: a later wait reads."""
        listening = self.connected.is_set()
        unread: list[str] = []
        records: dict[str, str] = {}
        for job_id in ids:
            early = self._expected.pop(job_id, None)
            if early is None or not listening or early.connects != self.connects:
                unread.append(job_id)
            elif early.record is not None:
                records[job_id] = early.record
            elif early.done:
                unread.append(job_id)
        return unread, records

    def forget(self, fut: asyncio.Future[None]) -> None:
        self._jobs.pop(fut, None)
        self._done.pop(fut, None)
        if not fut.done():
            fut.cancel()


_EXPECT_MAX = 10_000  # expected ids kept at most (a bound for callers that never wait)


class _Expected:
    __slots__ = ("connects", "done", "record")

    def __init__(self, connects: int) -> None:
        self.connects = connects
        self.done = False
        self.record: str | None = None
