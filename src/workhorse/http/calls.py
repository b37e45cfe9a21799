"""Inline calls: an http task's handler runs in the server process, under a job record of
its own, so its logs, progress and outcome are kept and shown like any job's.

No new store method: the call is enqueued on a queue private to this server process (no
worker consumes it) and claimed back at once; claims hand each lease to the request
waiting for it, whichever request's claim took it. ``max_stalls=0``: if this process dies
mid-call, the expired lease fails the record instead of leaving it queued forever.

Calls in flight together share round trips: the records that arrive while one enqueue is
being written go in the next one, followed by one claim for all of them, and finishes go
through the worker's group commit (``Finisher``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from workhorse import events
from workhorse.client import Client
from workhorse.context import JobContext
from workhorse.job import PRIVATE_QUEUE_PREFIX, Lease, NewJob, Outcome
from workhorse.task import Task
from workhorse.worker.finisher import Finisher
from workhorse.worker.runner import Runner

log = logging.getLogger("workhorse.http")

# The prefix of every server process's private queue: `workhorse jobs --queue http.*`
# style listings show these records as HTTP calls.
CALL_QUEUE_PREFIX = PRIVATE_QUEUE_PREFIX
# Leases claimed per round trip: several requests in flight are served by one claim.
_CLAIM_BATCH = 64


class InlineCalls:
    def __init__(self, client: Client) -> None:
        self.client = client
        tag = os.urandom(6).hex()
        self.queue = f"{CALL_QUEUE_PREFIX}{tag}"
        self.worker_id = f"http:{socket.gethostname()}:{os.getpid()}:{tag}"
        self._threads = ThreadPoolExecutor(thread_name_prefix="workhorse-http")
        self.runner = Runner(client, self._threads, concurrency=1)
        self._waiting: dict[str, asyncio.Future[Lease]] = {}
        self._pending: list[NewJob] = []  # records to write with the next enqueue
        self._writer: asyncio.Task[None] | None = None
        self._finisher: Finisher | None = None
        # The calls running, by job id, and the one task renewing their leases.
        self._running: dict[str, tuple[Lease, JobContext, asyncio.Task[Outcome]]] = {}
        self._keeper: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        await self.runner.close()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def record(self, task: Task[Any, Any], data: Any) -> NewJob:
        """The job record of a call of ``task`` on ``data`` (a bad payload raises here)."""
        new = self.client.new_job(task, data, {"queue": self.queue, "retries": 0, "max_stalls": 0})
        new.dedup_key = None  # a call is never a duplicate of a queued job
        return new

    async def call(self, new: NewJob) -> tuple[str, Outcome]:
        """Run the call ``new`` (from ``record``) here: its job id and outcome (written)."""
        fut: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiting[new.id] = fut
        self._pending.append(new)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="workhorse-http-calls")
        try:
            lease = await fut
        finally:
            self._waiting.pop(new.id, None)
        return new.id, await self._run(lease)

    async def _write(self) -> None:
        """Write the pending records and claim them back, batch after batch, handing each
        lease (or the store's error) to the request waiting for it."""
        client = self.client
        try:
            while self._pending:
                batch, self._pending = self._pending[:500], self._pending[500:]
                try:
                    backend = await client.store()
                    await backend.enqueue(batch)
                    if client.bus.wants("job.queued"):
                        for new in batch:
                            client.bus.emit(events.queued(new.id, new.task, new.queue))
                    await self._claim(client.settings.lease)
                except Exception as exc:
                    for new in batch:
                        waiter = self._waiting.get(new.id)
                        if waiter is not None and not waiter.done():
                            waiter.set_exception(exc)
        finally:
            self._writer = None

    async def _claim(self, lease_s: float) -> None:
        backend = self.client.backend
        while True:
            leases = await backend.claim([self.queue], self.worker_id, _CLAIM_BATCH, lease_s)
            for lease in leases:
                waiter = self._waiting.get(lease.job_id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(lease)
                else:  # its request went away before the claim: nobody will run it
                    await backend.finish([(lease, _abandoned())])
            if len(leases) < _CLAIM_BATCH:
                return

    async def _run(self, lease: Lease) -> Outcome:
        ctx = JobContext(self.client, lease)
        attempt = asyncio.create_task(self.runner.run(lease, ctx))
        self._running[lease.job_id] = (lease, ctx, attempt)
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._renew(), name="workhorse-http-renew")
        try:
            outcome = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The caller hung up: stop the handler and record the call as cancelled.
            ctx.cancelled = True
            attempt.cancel()
            logs: list[dict[str, Any]] = []
            with contextlib.suppress(BaseException):
                logs = (await attempt).logs  # the runner's outcome carries the lines logged
            outcome = Outcome("cancelled", error=_HUNG_UP, logs=logs + ctx.drain_logs())
            await self._finish(lease, outcome)
            raise
        finally:
            self._running.pop(lease.job_id, None)
            if not self._running and self._keeper is not None:
                self._keeper.cancel()  # nothing left to renew: no timer outlives the calls
                self._keeper = None
        if outcome.kind == "retry":  # a full concurrency or rate limit: the caller retries
            outcome = Outcome(
                "failed",
                error={
                    "type": "RateLimited",
                    "message": f"task {lease.task!r} is at its concurrency or rate limit; "
                    "try again later",
                    "traceback": "",
                },
                delay=outcome.delay,
                logs=outcome.logs,
            )
        await self._finish(lease, outcome)
        return outcome

    async def _finish(self, lease: Lease, outcome: Outcome) -> None:
        if self._finisher is None:
            self._finisher = Finisher(self.client.backend)
        if not await self._finisher.submit(lease, outcome):
            log.warning("call %s: its outcome was refused, the lease was lost", lease.job_id)

    async def _renew(self) -> None:
        """Keep the leases of the calls running, all in one round trip every third of a
        lease, and stop a call whose job someone cancelled."""
        backend = self.client.backend
        while self._running:
            await asyncio.sleep(min(r[0].lease for r in self._running.values()) / 3)
            running = list(self._running.values())
            try:
                result = await backend.renew([lease for lease, _, _ in running])
            except Exception:
                log.exception("renewing the leases of %d HTTP calls failed", len(running))
                continue
            for lease, ctx, attempt in running:
                if lease.job_id in result.cancel or lease.job_id in result.lost:
                    ctx.cancelled = True
                    attempt.cancel()


_HUNG_UP = {"type": "Cancelled", "message": "the HTTP caller went away", "traceback": ""}


def _abandoned() -> Outcome:
    return Outcome("cancelled", error=_HUNG_UP)
