"""The backend contract: the only surface the layers above talk to.

Every method is atomic on its own. Times are decided by the backend's clock (``now``),
never by a worker's. Memory is the reference implementation; the contract suite in
``tests/contract`` holds every backend to the same behaviour.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workhorse.backends.loglines import MAX_LOG_BYTES, MAX_LOG_LINES
from workhorse.events import run_of
from workhorse.job import (
    Claim,
    Claimed,
    EnqueueResult,
    Event,
    Job,
    JobKey,
    JobState,
    Lease,
    NewJob,
    Outcome,
    WorkerInfo,
)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can promise. Nothing differs silently: callers check these."""

    durable: bool  # jobs survive the process that wrote them
    multi_process: bool  # several processes may share it
    multi_machine: bool  # several machines may share it
    transactional_enqueue: bool = False  # enqueue inside the application's transaction
    # Event ids number the events 1, 2, 3... (a gap counts events); Redis's are times and
    # PostgreSQL's are positions (xid, id), which count nothing.
    counted_event_ids: bool = True
    # ``finish`` writes a completed outcome's follow-ups (``Outcome.followups``) with it:
    # a flow step's next jobs ride on the finish batch instead of a call of their own.
    finish_followups: bool = False
    # ``finish`` publishes a written outcome's ``Outcome.events`` with it: a flow step's
    # own events ride on the finish batch instead of a publish of their own.
    finish_events: bool = False
    # ``finish`` writes a completed outcome's ``Outcome.end`` with it: the finish of a
    # closed flow's last step ends its run instead of two calls of its own after it.
    finish_ends: bool = False


@dataclass(frozen=True, slots=True)
class RenewResult:
    lost: frozenset[str]  # no longer ours: reclaimed, finished elsewhere, or gone
    cancel: frozenset[str]  # still ours, but a cancel was requested


# The most of one job's events a store keeps findable by its id (Redis keeps their ids in
# the job's record); older ones stay in the log, read by events() only.
JOB_EVENTS = 100


class Backend(abc.ABC):
    url: str
    capabilities: Capabilities
    # A job keeps its newest log lines within these (the client sets them from its
    # settings before it opens the store); older ones are counted, not kept.
    max_log_lines: int = MAX_LOG_LINES
    max_log_bytes: int = MAX_LOG_BYTES

    # -- lifecycle -------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def now(self) -> float:
        """The backend's clock, epoch seconds."""

    # -- producing -------------------------------------------------------------------
    @abc.abstractmethod
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Store the jobs in one round trip; a live dedup key returns the existing job."""

    async def enqueue_watched(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """``enqueue`` for a caller that waits for these jobs next (``app.run``): a backend
        may start watching for their finish in the same round trip."""
        return await self.enqueue(jobs)

    async def enqueue_claimed(self, items: Sequence[tuple[Claim, NewJob]]) -> list[Claimed]:
        """Each job with its claim (a flow step's follow-up and the run's index entry):
        nothing while ``claim.unless`` is live; otherwise the claim's key is set unless it
        is live (True: this call set it), and the job is written unless a job with its id
        or a live one with its dedup key exists (its result, or None: not written; a store
        whose enqueue is idempotent per id may answer a job that had the id as written,
        never writing it again). SQLite, PostgreSQL and memory do each item in one step
        and all items in one round trip; this default makes one to three calls per item
        and one enqueue, so a job may be written just after its ``unless`` became live.
        ``replace`` and ``hold`` are not for these jobs."""
        out: list[Claimed] = []
        todo: list[int] = []
        for claim, new in items:
            won = await self.set_if_absent(claim.key, claim.value, unless=claim.unless)
            if not won and (
                (claim.unless is not None and await self.kv_get(claim.unless) is not None)
                or await self.get(new.id) is not None
            ):
                out.append((False, None))
                continue
            todo.append(len(out))  # claimed, or claimed by a writer that died before its job
            out.append((won, None))
        results = await self.enqueue([items[i][1] for i in todo])
        for i, res in zip(todo, results, strict=True):
            out[i] = (out[i][0], res if res.created else None)
        return out

    async def enqueue_claimed_with(
        self,
        items: Sequence[tuple[Claim, NewJob]],
        kv: Mapping[str, str],
        events: Sequence[Event],
        counters: Sequence[tuple[str, int, float | None]] = (),
    ) -> list[Claimed]:
        """``enqueue_claimed`` after ``kv_set`` of each key of ``kv`` (no ttl), ``publish``
        of ``events`` and ``counter_add_many`` of ``counters`` (their values not returned):
        a reader that finds a job finds them too, and the events come before the jobs'.
        Memory, SQLite and PostgreSQL write all in one transaction and one round trip,
        Redis in one pipelined round trip of atomic calls in this order; this default
        writes the keys, events and counters side by side, then the jobs."""
        written = asyncio.gather(*(self.kv_set(k, v) for k, v in kv.items()), self.publish(events))
        try:
            await self.counter_add_many(counters)  # in the caller's task, while those go
        finally:
            await written
        return await self.enqueue_claimed(items)

    # -- consuming -------------------------------------------------------------------
    @abc.abstractmethod
    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        """Lease up to ``limit`` due jobs: priority high first, then first in first out.

        Paused queues are skipped. ``attempts`` grows by one per claimed job (taken back if
        the lease expires: see ``reclaim_expired``).
        """

    @abc.abstractmethod
    async def renew(self, leases: Sequence[Lease]) -> RenewResult:
        """Extend the leases by each one's ``lease`` seconds."""

    @abc.abstractmethod
    async def finish(self, items: Sequence[tuple[Lease, Outcome]]) -> list[bool]:
        """Apply outcomes; an item whose lease is no longer the owner's is refused (False).
        With ``capabilities.finish_followups``, a written outcome's ``followups`` are
        written in the same step as ``enqueue_claimed`` writes them, their events after
        the outcome's, and their answers set in ``outcome.followups_claimed``. With
        ``capabilities.finish_events``, a written outcome's ``events`` are published (as
        ``publish`` would: the log and the run's index) in the same step, in order, before
        the outcome's own event; a refused outcome writes none of them, and a finish
        resent after a lost reply writes them once. With ``capabilities.finish_ends``, a
        written completed outcome's ``end`` is written in the same step, after every
        event of the call: its marker set unless present; if set, its retention entry set
        (to the mark, no ttl) and its live entry deleted
        while it holds the unmarked name and, if deleted, its event logged (as
        ``publish``); the answers set in ``outcome.ended``, None for a refused outcome."""

    @abc.abstractmethod
    async def update(
        self,
        lease: Lease,
        progress: Any = None,
        logs: Sequence[dict[str, Any]] = (),
        dropped: int = 0,
    ) -> bool:
        """Record progress and log lines of an active job; False if the lease is lost.

        The job keeps its newest lines within ``max_log_lines`` and ``max_log_bytes`` (so
        do finishes); the older ones, and ``dropped`` more the worker never sent, are
        counted and shown to readers as one line (``loglines.shown``)."""

    @abc.abstractmethod
    async def reclaim_expired(self) -> list[str]:
        """Expired leases go back to queued, or to failed once ``stalls`` exceeds
        ``max_stalls``. A try whose worker died is a stall: ``stalls`` grows by one and
        ``attempts`` gives back the one its claim took, so ``retries`` counts only attempts
        that ran to an outcome."""

    @abc.abstractmethod
    async def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        """Return when work may be available in ``queues``, or after ``timeout``."""

    async def wait_claim(
        self, queue: str, worker: str, limit: int, lease: float, timeout: float
    ) -> list[Lease] | None:
        """Wait as ``wait_for_jobs([queue], timeout)``, and claim as ``claim`` would if
        the store can join the two without a round trip between: the jobs claimed (maybe
        none), or None when it claimed nothing and the worker claims next (this default).
        After jobs, the worker calls it again without a claim between: a store that
        returns jobs here must return that next call at once (None, or the jobs) while
        any job of ``queue`` is due."""
        await self.wait_for_jobs([queue], timeout)
        return None

    @abc.abstractmethod
    async def wait_finished(self, ids: Collection[str], timeout: float) -> list[Job]:
        """Return the finished jobs among ``ids``, waiting up to ``timeout`` for one."""

    # -- inspecting and controlling ----------------------------------------------------
    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None: ...

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        """The records of those ``ids`` that exist, in any order. This default reads them
        one by one, side by side; a store that can reads them in one round trip."""
        found = await asyncio.gather(*(self.get(i) for i in ids))
        return [job for job in found if job is not None]

    @abc.abstractmethod
    async def query(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 50,
        offset: int = 0,
        after: JobKey | None = None,
    ) -> list[Job]:
        """Jobs newest first (creation time, then id), skipping ``offset``. ``after``:
        only the jobs listed after that one (a keyset page: nothing skipped or repeated
        when jobs come and go meanwhile); the job's stored creation time is used while
        it exists, else ``after.created``."""

    @abc.abstractmethod
    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """``{queue: {state: n}}`` with every state present."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> JobState | None:
        """Cancel a queued job at once; flag an active one. Returns the state after."""

    @abc.abstractmethod
    async def retry(self, job_id: str, data: bytes | None = None, by: str | None = None) -> bool:
        """Put a failed or cancelled job back in its queue with fresh attempts. With ``data``
        (an encoded payload) it runs with that payload instead, set in the same step; its
        ``job.queued`` event names ``by`` and keeps the payload replaced (events.retried)."""

    @abc.abstractmethod
    async def purge(
        self,
        *,
        states: Collection[JobState],
        older_than: float | None = None,
        keep_last: int | None = None,
        queue: str | None = None,
        retention: bool = False,
    ) -> int:
        """Delete finished jobs finished more than ``older_than`` seconds ago, or beyond
        the newest ``keep_last`` per queue and state. Returns how many were deleted.

        Each queue's count is read and applied in one atomic step, so a job that finishes
        meanwhile is not deleted and the newest ``keep_last`` at the read all stay.

        ``retention`` (the workers' sweep): a job with its own ``keep_for`` that no run()
        caller holds is deleted once ``keep_for`` seconds have passed since it finished,
        and ``older_than`` / ``keep_last`` never delete it (it still counts toward
        ``keep_last``). Without it (an operator's purge) every job is treated alike."""

    @abc.abstractmethod
    async def release(self, ids: Collection[str]) -> None:
        """A run() caller that held these jobs (``NewJob.hold``, or a duplicate enqueue
        with it) has its result: one hold less each. A finished job left without holds
        whose own ``keep_for`` has passed is deleted at once."""

    @abc.abstractmethod
    async def pause(self, queue: str) -> None: ...

    @abc.abstractmethod
    async def resume(self, queue: str) -> None: ...

    @abc.abstractmethod
    async def paused(self) -> set[str]: ...

    # -- coordination ------------------------------------------------------------------
    @abc.abstractmethod
    async def set_if_absent(
        self, key: str, value: str, ttl: float | None = None, unless: str | None = None
    ) -> bool:
        """Set ``key`` unless it is live; with ``unless``, also not while that key is
        live (checked in the same step). True when this call set it."""

    @abc.abstractmethod
    async def counter_add(self, key: str, n: int, ttl: float | None = None) -> int:
        """Add ``n`` to the counter ``key`` (0 when absent or expired) and return its new
        value; ``ttl``: the counter expires that long after the add that created it (an
        add to a live counter keeps its expiry)."""

    async def counter_add_many(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        """``counter_add`` of each (key, n, ttl) in order, as if one after another (a key
        given twice: the second add sees the first): the new values. This default makes
        one call per item; every store here adds them all in one round trip, and a resent
        call counts once, as ``counter_add``'s does."""
        return [await self.counter_add(key, n, ttl) for key, n, ttl in items]

    # The small key-value store behind schedules and limits. It shares its keys with
    # set_if_absent; counters live apart.
    @abc.abstractmethod
    async def kv_get(self, key: str) -> str | None: ...

    async def kv_get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The live keys among ``keys``, with their values. This default reads them one
        by one, side by side; every store here reads them in one round trip (a page of
        flow runs reads its runs' records at once)."""
        found = await asyncio.gather(*(self.kv_get(k) for k in keys))
        return {k: v for k, v in zip(keys, found, strict=True) if v is not None}

    @abc.abstractmethod
    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Set ``key`` (create or overwrite), expiring after ``ttl`` seconds if given."""

    @abc.abstractmethod
    async def kv_delete(self, key: str, value: str | None = None) -> bool:
        """Delete ``key``; with ``value``, only while it still holds that value."""

    @abc.abstractmethod
    async def kv_extend(self, held: Mapping[str, str], ttl: float) -> set[str]:
        """Set each key of ``held`` to expire ``ttl`` seconds from now, but only while it
        still holds its value there; returns the keys extended (those still ours)."""

    @abc.abstractmethod
    async def kv_scan(
        self,
        prefix: str,
        limit: int | None = None,
        *,
        reverse: bool = False,
        after: str | None = None,
    ) -> dict[str, str]:
        """Every live key starting with ``prefix``, with its value: keys written by kv_set
        or by set_if_absent without a ttl. Claims taken with a ttl (cron ticks, limit
        slots) need not be listed (Redis keeps them out of its scan index). The keys come
        in byte order (their UTF-8 bytes), highest first with ``reverse``; ``after``: only
        those past that key in this order; ``limit``: the first that many (a page)."""

    # -- events and workers ------------------------------------------------------------
    @abc.abstractmethod
    async def publish(self, events: Sequence[Event]) -> None: ...

    @abc.abstractmethod
    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events with ``id > after``, oldest first."""

    async def job_events(self, job_id: str, limit: int = JOB_EVENTS) -> list[Event]:
        """The job's newest ``limit`` events still in the log (those the store logged as
        its state changed; events a caller published may be left out, and a flow run's,
        with a run in their data, are: they are read by the run), oldest first.
        This default walks the log; every store here reads by the job's id instead, so
        the cost does not grow with other jobs' events."""
        found: list[Event] = []
        cursor = 0
        while batch := await self.events(cursor, 10_000):
            found += [e for e in batch if e.job_id == job_id and run_of(e) is None]
            cursor = batch[-1].id
            if len(batch) < 10_000:
                break
        return found[-limit:] if limit > 0 else []

    async def events_head(self) -> int:
        """The id of the newest event in the log (0 when empty): where a reader that wants
        only what comes next starts, skipping nothing written later. This default walks the
        log; the stores answer from an index (PostgreSQL: the newest position below every
        transaction in flight)."""
        cursor = 0
        while batch := await self.events(cursor, 10_000):
            cursor = batch[-1].id
            if len(batch) < 10_000:
                break
        return cursor

    async def run_events(self, run: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """The events ``publish`` wrote with ``data["run"] == run`` (a flow run's) and
        ``id > after``, oldest first, as ``events`` holds them. This default walks the log;
        a store keeps them by run, so the read costs the same however many runs wrote."""
        out: list[Event] = []
        cursor = after
        while len(out) < limit and (batch := await self.events(cursor, 1000)):
            cursor = batch[-1].id
            out += [e for e in batch if e.data.get("run") == run]
            if len(batch) < 1000:
                break
        return out[:limit]

    @abc.abstractmethod
    async def beat(self, info: WorkerInfo, ttl: float) -> None: ...

    @abc.abstractmethod
    async def workers(self) -> list[WorkerInfo]: ...

    @abc.abstractmethod
    async def remove_worker(self, worker_id: str) -> None: ...
