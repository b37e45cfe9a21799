"""The reference backend: plain dicts and heaps in one process.

It promises nothing across the death of its process and is bound to one event loop.
Most tests run on it; the contract suite holds the durable backends to its behaviour.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs

from workhorse import codec, events
from workhorse.backends import loglines
from workhorse.backends.base import JOB_EVENTS, Backend, Capabilities, RenewResult
from workhorse.backends.memory.keyvalues import KeyValues
from workhorse.backends.memory.wakeup import Wakeup
from workhorse.job import (
    FINISHED_STATES,
    MAX_STALLS,
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
    RunEnd,
    WorkerInfo,
    to_datetime,
)
from workhorse.urls import check_options

_Q, _A = JobState.QUEUED, JobState.ACTIVE

# An event as the log keeps it, but its data: (type, job_id, task, queue, at, id). A tuple of
# strings and numbers is untracked by the cyclic GC at its first collection, where a kept
# Event (or a tuple holding a dict) is walked by every full collection after (five a step).
_Kept = tuple[str, str | None, str | None, str | None, float, int]
_ID: Final = 5


def _kept(raw: bytes) -> bytes:
    """A copy of exactly ``raw``'s size for a record this store keeps: orjson hands back
    bytes that hold a 4 KiB buffer however short the JSON, ~4 KiB per payload and result
    kept (218 MiB after 20,000 no-op jobs). Copying costs ~0.15 µs."""
    return bytes(memoryview(raw))


@dataclass(slots=True)
class _Rec:
    id: str
    task: str
    queue: str
    data: bytes
    priority: int
    max_attempts: int
    timeout: float | None
    lease: float | None
    dedup_key: str | None
    created_at: float
    run_at: float
    seq: int
    state: JobState = _Q
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    progress: Any = None
    result: bytes | None = None
    error: dict[str, Any] | None = None
    # The kept log lines and their sizes as JSON, made at the first line: most jobs log
    # none, and two empty lists per job were two more objects for the cyclic GC to walk.
    logs: list[dict[str, Any]] | None = None
    log_sizes: list[int] | None = None
    logs_dropped: int = 0
    worker: str | None = None
    token: str | None = None
    expires_at: float | None = None
    cancel_requested: bool = False
    keep_for: float | None = None
    holds: int = 0  # run() callers waiting for its result (see release)
    stalls: int = 0
    max_stalls: int = MAX_STALLS


def _event(kept: _Kept, data: dict[str, Any]) -> Event:
    type_, job_id, task, queue, at, event_id = kept
    return Event(type_, job_id, task, queue, data, at, event_id)


class MemoryBackend(Backend):
    capabilities = Capabilities(
        durable=False,
        multi_process=False,
        multi_machine=False,
        finish_followups=True,
        finish_events=True,
        finish_ends=True,
    )

    def __init__(
        self,
        url: str = "memory://",
        *,
        clock: Callable[[], float] = time.time,
        max_events: int = 100_000,
    ) -> None:
        self.url = url
        check_options(parse_qs(url.partition("?")[2]), (), "memory://")
        self._clock = clock
        self._jobs: dict[str, _Rec] = {}
        self._ready: dict[str, list[tuple[int, float, int, str]]] = {}
        self._delayed: dict[str, list[tuple[float, int, str]]] = {}
        self._active: dict[str, _Rec] = {}
        # Finished ids per state in the order they ended, with (finished_at, seq): the
        # worker runs retention every few thousand jobs, and while that order is also
        # retention's order (no clock went back) it removes the oldest without a sort.
        self._ended: dict[JobState, dict[str, tuple[float, int]]] = {
            st: {} for st in FINISHED_STATES
        }
        self._in_order = dict.fromkeys(FINISHED_STATES, True)
        self._own_retention = False  # some job ever had its own keep_for
        self._dedup: dict[tuple[str, str], str] = {}  # (queue, dedup key) -> live job id
        self._paused: set[str] = set()
        self._kv = KeyValues(clock)
        # The log, bounded by max_events: job_events scans it (a page view) rather than every
        # job keeping an index of its own (the hot path's cost, and ~150 bytes per job).
        self._events: deque[_Kept] = deque()
        self._event_data: deque[dict[str, Any]] = deque()  # _events' data, in their order
        self._run_events: dict[str, deque[int]] = {}  # ids of published events by data["run"]
        self._max_events = max_events
        self._trim_at = max_events + min(1000, max_events)  # trims amortised over 1,000 events
        self._event_ids = itertools.count(1)
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._seq = itertools.count()
        self._work = Wakeup()  # workers waiting for jobs
        self._done = Wakeup()  # callers waiting for jobs to finish

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def now(self) -> float:
        return self._clock()

    # -- helpers ---------------------------------------------------------------------
    def _event(self, type_: str, rec: _Rec, now: float, **data: Any) -> None:
        self._logged(type_, rec, now, data)

    def _logged(self, type_: str, rec: _Rec, now: float, data: dict[str, Any]) -> None:
        """``_event`` with the data as a dict it may keep (a claim's and a finish's, once
        per job: no keyword arguments copied into a new dict)."""
        self._events.append((type_, rec.id, rec.task, rec.queue, now, next(self._event_ids)))
        self._event_data.append(data)
        if len(self._events) > self._trim_at:
            self._trim_events()

    def _trim_events(self) -> None:
        """Keep the newest ``max_events``, and the events from a hook group's floor on, up to
        HOLD_FACTOR times that; amortised over up to a thousand events, like SQLite's."""
        floors = [int(v) for v in self._kv.scan(events.HOLD_PREFIX).values()]
        log, kept_data, keep = self._events, self._event_data, self._max_events
        by_run = self._run_events
        drop = len(log) - keep
        if floors:  # ids run on without gaps: those below the floor are the oldest ones
            below = min(floors) - log[0][_ID]
            drop = min(drop, max(below, len(log) - keep * events.HOLD_FACTOR))
        # A run's index entry dropped with its event, inline: a step's five events each
        # make this loop's turn once a full log drops one per event written.
        for _ in range(drop):
            event_id, data = log.popleft()[_ID], kept_data.popleft()
            run = data.get("run") if data else None
            if isinstance(run, str):
                held = by_run.get(run)  # the log drops its oldest first: so does the run's
                if held and held[0] == event_id:
                    held.popleft()
                    if not held:
                        del by_run[run]

    def _schedule(self, rec: _Rec, now: float) -> None:
        if rec.run_at <= now:
            heapq.heappush(
                self._ready.setdefault(rec.queue, []),
                (-rec.priority, rec.run_at, rec.seq, rec.id),
            )
        else:
            heapq.heappush(self._delayed.setdefault(rec.queue, []), (rec.run_at, rec.seq, rec.id))

    def _end(self, rec: _Rec, state: JobState, now: float) -> None:
        rec.state = state
        rec.finished_at = now
        ended, key = self._ended[state], (now, rec.seq)
        if ended and key < ended[next(reversed(ended))]:
            self._in_order[state] = False
        ended[rec.id] = key
        rec.token = rec.expires_at = None
        self._active.pop(rec.id, None)
        if rec.dedup_key is not None and self._dedup.get((rec.queue, rec.dedup_key)) == rec.id:
            del self._dedup[rec.queue, rec.dedup_key]

    def _requeue(self, rec: _Rec, run_at: float, now: float) -> None:
        rec.state = _Q
        rec.run_at = run_at
        rec.seq = next(self._seq)
        rec.token = rec.expires_at = None
        rec.worker = None
        rec.cancel_requested = False
        self._active.pop(rec.id, None)
        self._schedule(rec, now)

    def _public_state(self, rec: _Rec, now: float) -> JobState:
        if rec.state is _Q and rec.run_at > now:
            return JobState.SCHEDULED
        return rec.state

    def _to_job(self, rec: _Rec, now: float) -> Job:
        return Job(
            id=rec.id,
            task=rec.task,
            queue=rec.queue,
            state=self._public_state(rec, now),
            data=codec.loads(rec.data),
            priority=rec.priority,
            attempts=rec.attempts,
            max_attempts=rec.max_attempts,
            created_at=to_datetime(rec.created_at),  # type: ignore[arg-type]
            run_at=to_datetime(rec.run_at),  # type: ignore[arg-type]
            started_at=to_datetime(rec.started_at),
            finished_at=to_datetime(rec.finished_at),
            progress=rec.progress,
            result=None if rec.result is None else codec.loads(rec.result),
            error=rec.error,
            logs=loglines.shown(list(rec.logs or ()), rec.logs_dropped),
            timeout=rec.timeout,
            worker=rec.worker,
            lease_expires_at=to_datetime(rec.expires_at),
            dedup_key=rec.dedup_key,
            keep_for=rec.keep_for,
            stalls=rec.stalls,
            max_stalls=rec.max_stalls,
        )

    # -- producing -------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        out = self._enqueue(jobs, self._clock())
        self._work.wake()
        return out

    def _enqueue(self, jobs: Sequence[NewJob], now: float) -> list[EnqueueResult]:
        out = []
        for new in jobs:
            if (same := self._jobs.get(new.id)) is not None:
                # The same id again (a cron tick fired a second time): the stored job stands,
                # as on Redis.
                out.append(EnqueueResult(same.id, True, self._public_state(same, now)))
                continue
            live = None if new.dedup_key is None else self._dedup.get((new.queue, new.dedup_key))
            if live is not None:
                rec = self._jobs[live]
                replaced = new.replace and rec.state is _Q
                if replaced:
                    # Debounce: the newest payload wins and its delay starts over.
                    rec.data = _kept(new.data)
                    rec.priority = new.priority
                    rec.max_attempts = new.max_attempts
                    rec.max_stalls = new.max_stalls
                    rec.timeout = new.timeout
                    self._requeue(rec, new.at if new.at is not None else now + new.delay, now)
                    self._event("job.queued", rec, now, replaced=True)
                rec.holds += new.hold
                out.append(EnqueueResult(rec.id, False, self._public_state(rec, now), replaced))
                continue
            run_at = new.at if new.at is not None else now + new.delay
            rec = _Rec(
                new.id,
                new.task,
                new.queue,
                _kept(new.data),
                new.priority,
                new.max_attempts,
                new.timeout,
                new.lease,
                new.dedup_key,
                now,
                run_at,
                next(self._seq),
                keep_for=new.keep_for,
                holds=int(new.hold),
                max_stalls=new.max_stalls,
            )
            self._jobs[rec.id] = rec
            if rec.dedup_key is not None:
                self._dedup[rec.queue, rec.dedup_key] = rec.id
            if rec.keep_for is not None:
                self._own_retention = True
            self._schedule(rec, now)
            self._event("job.queued", rec, now)
            # _public_state's, inline (once per job): it is queued, due at run_at
            state = JobState.SCHEDULED if run_at > now else _Q
            out.append(EnqueueResult(rec.id, True, state))
        return out

    async def enqueue_claimed(self, items: Sequence[tuple[Claim, NewJob]]) -> list[Claimed]:
        out = self._claimed(items, self._clock())
        self._work.wake()
        return out

    async def enqueue_claimed_with(
        self,
        items: Sequence[tuple[Claim, NewJob]],
        kv: Mapping[str, str],
        events: Sequence[Event],
        counters: Sequence[tuple[str, int, float | None]] = (),
    ) -> list[Claimed]:
        now = self._clock()
        for key, value in kv.items():
            self._kv.put(key, value, None)
        self._published(events, now)
        for key, n, ttl in counters:
            self._kv.add(key, n, ttl)
        out = self._claimed(items, now)
        self._work.wake()
        return out

    def _claimed(self, items: Sequence[tuple[Claim, NewJob]], now: float) -> list[Claimed]:
        """The claims and the jobs, with nothing awaited: one step of the event loop."""
        out: list[Claimed] = []
        jobs, take, enqueue = self._jobs, self._kv.claim, self._enqueue
        for claim, new in items:
            won = take(claim.key, claim.value, claim.unless)
            if won is None:  # ``unless`` is live: neither the claim nor the job
                out.append((False, None))
            elif new.id in jobs:  # the same cause again (or an id earlier in the call)
                out.append((won, None))
            else:
                # Each job as its claim is taken: claims are no events, so the log reads
                # as for one batch of the jobs after every claim.
                (res,) = enqueue([new], now)
                out.append((won, res if res.created else None))
        return out

    # -- consuming -------------------------------------------------------------------
    def _promote(self, queue: str, now: float) -> None:
        delayed = self._delayed.get(queue)
        while delayed and delayed[0][0] <= now:
            _, seq, job_id = heapq.heappop(delayed)
            rec = self._jobs.get(job_id)
            if rec is not None and rec.state is _Q and rec.seq == seq:
                heapq.heappush(
                    self._ready.setdefault(queue, []), (-rec.priority, rec.run_at, seq, job_id)
                )

    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        now = self._clock()
        leases: list[Lease] = []
        base = os.urandom(8).hex() + "."  # tokens unique per claim and job, one syscall
        for queue in queues:
            if queue in self._paused:
                continue
            self._promote(queue, now)
            ready = self._ready.get(queue)
            while ready and len(leases) < limit:
                _, _, seq, job_id = heapq.heappop(ready)
                rec = self._jobs.get(job_id)
                if rec is None or rec.state is not _Q or rec.seq != seq:
                    continue  # a stale entry: cancelled, purged or rescheduled since
                rec.state = _A
                rec.attempts += 1
                rec.worker = worker
                rec.token = base + str(len(leases))
                rec.started_at = now
                span = rec.lease or lease
                rec.expires_at = now + span
                self._active[rec.id] = rec
                self._logged("job.started", rec, now, {"attempt": rec.attempts, "worker": worker})
                leases.append(
                    Lease(
                        rec.id,
                        rec.token,
                        rec.task,
                        rec.queue,
                        rec.data,
                        rec.attempts,
                        rec.max_attempts,
                        rec.timeout,
                        span,
                        rec.created_at,
                        rec.stalls,
                    )
                )
            if len(leases) >= limit:
                break
        return leases

    def _owned(self, lease: Lease) -> _Rec | None:
        rec = self._jobs.get(lease.job_id)
        if rec is None or rec.state is not _A or rec.token != lease.token:
            return None
        return rec

    async def renew(self, leases: Sequence[Lease]) -> RenewResult:
        now = self._clock()
        lost, cancel = set(), set()
        for lease in leases:
            rec = self._owned(lease)
            if rec is None:
                lost.add(lease.job_id)
                continue
            rec.expires_at = now + lease.lease
            if rec.cancel_requested:
                cancel.add(lease.job_id)
        return RenewResult(frozenset(lost), frozenset(cancel))

    async def finish(self, items: Sequence[tuple[Lease, Outcome]]) -> list[bool]:
        now = self._clock()
        accepted = []
        requeued = False
        jobs = self._jobs
        for lease, outcome in items:
            rec = jobs.get(lease.job_id)  # _owned inline: a call per job less
            if rec is None or rec.state is not _A or rec.token != lease.token:
                accepted.append(False)
                outcome.followups_claimed = outcome.ended = None
                continue
            accepted.append(True)
            if outcome.events:  # a flow step's own events, before its outcome's
                self._published(outcome.events, now)
            if outcome.logs or outcome.logs_dropped:
                self._add_logs(rec, outcome.logs, outcome.logs_dropped)
            kind = outcome.kind
            rec.error = outcome.error
            if kind == "completed":
                rec.result = None if outcome.result is None else _kept(outcome.result)
                self._end(rec, JobState.COMPLETED, now)
            elif kind == "retry":
                if outcome.refund:
                    rec.attempts -= 1
                self._requeue(rec, now + outcome.delay, now)
                requeued = True
            else:
                self._end(rec, JobState(kind), now)
            type_, data = events.recorded(outcome, rec.attempts)  # a new dict, or None
            self._logged(type_, rec, now, {} if data is None else data)
            if outcome.followups and kind == "completed":
                outcome.followups_claimed = self._claimed(outcome.followups, now)
                requeued = True  # new work: the workers wake as for a retry
            if outcome.end is not None and kind == "completed":
                outcome.ended = self._run_ended(outcome.end, now)
        self._done.wake()
        if requeued:
            self._work.wake()
        return accepted

    def _run_ended(self, end: RunEnd, now: float) -> tuple[bool, bool]:
        """Write a finish's run end (``Outcome.end``): see ``Backend.finish``."""
        kv = self._kv
        if not kv.set_if_absent(end.key, end.mark, None):
            return False, False
        if end.entry is not None:
            kv.put(end.entry, end.mark, None)
        if not kv.delete(end.live, end.name):
            return True, False
        self._published((end.event,), now)
        return True, True

    async def update(
        self,
        lease: Lease,
        progress: Any = None,
        logs: Sequence[dict[str, Any]] = (),
        dropped: int = 0,
    ) -> bool:
        rec = self._owned(lease)
        if rec is None:
            return False
        if logs or dropped:
            self._add_logs(rec, logs, dropped)
        if progress is not None:
            rec.progress = progress
            self._event("job.progress", rec, self._clock(), progress=progress)
        return True

    def _add_logs(self, rec: _Rec, logs: Sequence[dict[str, Any]], dropped: int) -> None:
        kept, sizes = rec.logs, rec.log_sizes
        if kept is None or sizes is None:
            kept, sizes = rec.logs, rec.log_sizes = [], []
        kept.extend(logs)
        sizes.extend(loglines.line_size(line) for line in logs)
        drop = loglines.overflow(sizes, self.max_log_lines, self.max_log_bytes)
        if drop:
            del kept[:drop], sizes[:drop]
        rec.logs_dropped += dropped + drop

    async def reclaim_expired(self) -> list[str]:
        now = self._clock()
        expired = [
            r for r in self._active.values() if r.expires_at is not None and r.expires_at <= now
        ]
        for rec in expired:
            # A try whose worker died spends the stall budget, not an attempt.
            rec.attempts -= 1
            rec.stalls += 1
            error = {
                "type": "LeaseExpired",
                "message": f"worker {rec.worker} stopped renewing its lease (stall "
                f"{rec.stalls}, max_stalls {rec.max_stalls})",
                "traceback": "",
            }
            self._event("job.stalled", rec, now, stalls=rec.stalls, worker=rec.worker)
            rec.error = error
            if rec.cancel_requested:
                self._end(rec, JobState.CANCELLED, now)
                self._event("job.cancelled", rec, now)
            elif rec.stalls > rec.max_stalls:
                error["message"] = (
                    f"killed its worker {rec.stalls} times: the lease expired each time "
                    f"(max_stalls {rec.max_stalls})"
                )
                self._end(rec, JobState.FAILED, now)
                self._event("job.failed", rec, now, stalls=rec.stalls, error=error)
            else:
                self._requeue(rec, now, now)
        if expired:
            self._work.wake()
            self._done.wake()
        return [r.id for r in expired]

    async def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        now = self._clock()
        for queue in queues:
            if queue in self._paused:
                continue
            if self._ready.get(queue):
                return
            delayed = self._delayed.get(queue)
            if delayed:
                timeout = min(timeout, max(0.0, delayed[0][0] - now))
        if timeout > 0:
            await self._work.wait(timeout)

    async def wait_claim(
        self, queue: str, worker: str, limit: int, lease: float, timeout: float
    ) -> list[Lease] | None:
        """The wait and the claim on one step: nothing can take a job between them, and
        the worker's loop makes no claim of its own after each wait."""
        await self.wait_for_jobs([queue], timeout)
        return await self.claim([queue], worker, limit, lease)

    async def wait_finished(self, ids: Collection[str], timeout: float) -> list[Job]:
        done = self._finished(ids)
        if done or timeout <= 0:
            return done
        if not await self._done.wait(timeout):
            return []
        return self._finished(ids)

    def _finished(self, ids: Collection[str]) -> list[Job]:
        now = self._clock()
        out = []
        for job_id in ids:
            rec = self._jobs.get(job_id)
            if rec is not None and rec.state in FINISHED_STATES:
                out.append(self._to_job(rec, now))
        return out

    # -- inspecting and controlling ----------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        rec = self._jobs.get(job_id)
        return None if rec is None else self._to_job(rec, self._clock())

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        # One loop, not the base's gather of a coroutine per id: a flow's end reads.
        jobs, now = self._jobs, self._clock()
        return [self._to_job(rec, now) for rec in map(jobs.get, ids) if rec is not None]

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
        now = self._clock()
        found = []
        # Newest first, below (low, aid); an anchor that is gone is placed by the times a
        # reader sees as its microsecond: [low, high).
        low, high, aid = -math.inf, -math.inf, ""
        if after is not None:
            anchor = self._jobs.get(after.id)
            if anchor is None:
                low, high = after.span()
            else:
                low, high = anchor.created_at, math.nextafter(anchor.created_at, math.inf)
            aid = after.id
        for rec in sorted(self._jobs.values(), key=lambda r: (r.created_at, r.id), reverse=True):
            if after is not None and not (
                rec.created_at < low or (rec.created_at < high and rec.id < aid)
            ):
                continue
            if queue is not None and rec.queue != queue:
                continue
            if task is not None and rec.task != task:
                continue
            if state is not None and self._public_state(rec, now) is not state:
                continue
            found.append(rec)
        return [self._to_job(r, now) for r in found[offset : offset + limit]]

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        now = self._clock()
        out: dict[str, dict[str, int]] = {}
        for q in queues or ():
            out[q] = dict.fromkeys(JobState, 0)
        for rec in self._jobs.values():
            if queues is not None and rec.queue not in queues:
                continue
            row = out.setdefault(rec.queue, dict.fromkeys(JobState, 0))
            row[self._public_state(rec, now)] += 1
        return out

    async def cancel(self, job_id: str) -> JobState | None:
        rec = self._jobs.get(job_id)
        if rec is None:
            return None
        now = self._clock()
        if rec.state is _Q:
            self._end(rec, JobState.CANCELLED, now)
            self._event("job.cancelled", rec, now)
            self._done.wake()
        elif rec.state is _A:
            rec.cancel_requested = True
        return self._public_state(rec, now)

    async def retry(self, job_id: str, data: bytes | None = None, by: str | None = None) -> bool:
        rec = self._jobs.get(job_id)
        if rec is None or rec.state not in (JobState.FAILED, JobState.CANCELLED):
            return False
        if rec.dedup_key is not None:
            if (rec.queue, rec.dedup_key) in self._dedup:
                return False  # a newer live job holds the key
            self._dedup[rec.queue, rec.dedup_key] = rec.id
        del self._ended[rec.state][rec.id]
        now = self._clock()
        rec.attempts = rec.stalls = 0
        rec.finished_at = None
        rec.error = None
        rec.result = None
        previous = None
        if data is not None:
            previous, rec.data = rec.data, _kept(data)
        self._requeue(rec, now, now)
        self._event("job.queued", rec, now, **events.retried(previous, by))
        self._work.wake()
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
        now = self._clock()
        doomed: list[str] = []
        cut = None if older_than is None else now - older_than
        for st in set(states) & FINISHED_STATES:
            ended = self._ended[st]
            if not self._in_order[st]:
                self._ended[st] = ended = dict(sorted(ended.items(), key=lambda kv: kv[1]))
                self._in_order[st] = True
            ids = (
                list(ended) if queue is None else [i for i in ended if self._jobs[i].queue == queue]
            )
            # A job with its own keep_for (and no run() caller holding it) is kept for that
            # long, whatever the age and count settings say; it still counts toward the cap.
            own = (
                {i for i in ids if self._jobs[i].keep_for is not None and not self._jobs[i].holds}
                if retention and self._own_retention
                else set()
            )
            gone = [i for i in own if self._expired(self._jobs[i], now)]
            # Oldest first: each queue's doomed are a prefix of its ids (beyond its newest
            # keep_last, or finished too long ago).
            excess = self._excess(ids, keep_last)
            left = sum(excess.values())
            for job_id in ids:
                q = self._jobs[job_id].queue
                if excess.get(q, 0) > 0:
                    excess[q] -= 1
                    left -= 1
                elif cut is None or ended[job_id][0] > cut:
                    if not left:
                        break
                    continue
                if job_id not in own:
                    gone.append(job_id)
            for job_id in gone:
                del ended[job_id]
            doomed.extend(gone)
        for job_id in doomed:
            del self._jobs[job_id]
        return len(doomed)

    def _excess(self, ids: list[str], keep_last: int | None) -> dict[str, int]:
        """How many of each queue's finished ``ids`` are beyond its newest ``keep_last``."""
        if keep_last is None:
            return {}
        per_queue = Counter(self._jobs[i].queue for i in ids)
        return {q: n - keep_last for q, n in per_queue.items() if n > keep_last}

    @staticmethod
    def _expired(rec: _Rec, now: float) -> bool:
        """A finished job whose own keep_for has passed."""
        return (
            rec.keep_for is not None
            and rec.finished_at is not None
            and rec.finished_at + rec.keep_for <= now
        )

    async def release(self, ids: Collection[str]) -> None:
        now = self._clock()
        for job_id in ids:
            rec = self._jobs.get(job_id)
            if rec is None:
                continue
            rec.holds = max(rec.holds - 1, 0)
            if not rec.holds and rec.state in FINISHED_STATES and self._expired(rec, now):
                del self._jobs[job_id]
                del self._ended[rec.state][job_id]

    async def pause(self, queue: str) -> None:
        self._paused.add(queue)

    async def resume(self, queue: str) -> None:
        self._paused.discard(queue)
        self._work.wake()

    async def paused(self) -> set[str]:
        return set(self._paused)

    # -- coordination ------------------------------------------------------------------
    async def set_if_absent(
        self, key: str, value: str, ttl: float | None = None, unless: str | None = None
    ) -> bool:
        if unless is not None and self._kv.get(unless) is not None:
            return False
        return self._kv.set_if_absent(key, value, ttl)

    async def kv_get(self, key: str) -> str | None:
        return self._kv.get(key)

    async def kv_get_many(self, keys: Sequence[str]) -> dict[str, str]:
        get = self._kv.get
        return {k: v for k in keys if (v := get(k)) is not None}

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._kv.put(key, value, ttl)

    async def kv_delete(self, key: str, value: str | None = None) -> bool:
        return self._kv.delete(key, value)

    async def kv_extend(self, held: Mapping[str, str], ttl: float) -> set[str]:
        return self._kv.extend(held, ttl)

    async def kv_scan(
        self,
        prefix: str,
        limit: int | None = None,
        *,
        reverse: bool = False,
        after: str | None = None,
    ) -> dict[str, str]:
        return self._kv.scan(prefix, limit, reverse, after)

    async def counter_add(self, key: str, n: int, ttl: float | None = None) -> int:
        return self._kv.add(key, n, ttl)

    async def counter_add_many(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        add = self._kv.add
        return [add(key, n, ttl) for key, n, ttl in items]

    # -- events and workers ------------------------------------------------------------
    async def publish(self, events: Sequence[Event]) -> None:
        self._published(events, self._clock())

    def _published(self, batch: Sequence[Event], now: float) -> None:
        log, kept_data = self._events, self._event_data
        ids, by_run = self._event_ids, self._run_events
        for ev in batch:
            data, event_id = ev.data, next(ids)
            log.append((ev.type, ev.job_id, ev.task, ev.queue, ev.at or now, event_id))
            kept_data.append(data)
            # Indexed by the run its data names (events.run_of's rule, inline: a step
            # publishes two or three events).
            run = data.get("run") if data else None
            if isinstance(run, str):
                held = by_run.get(run)  # not setdefault: a deque a call is 760 B
                if held is None:
                    held = by_run[run] = deque()
                held.append(event_id)
        if len(log) > self._trim_at:
            self._trim_events()

    async def run_events(self, run: str, after: int = 0, limit: int = 1000) -> list[Event]:
        held = self._run_events.get(run, ())
        wanted = [i for i in held if i > after][:limit]
        if not wanted:
            return []
        log, first = self._events, self._events[0][_ID]  # ids in the log run on without gaps
        return [_event(log[i - first], self._event_data[i - first]) for i in wanted]

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        out = []
        for kept, data in zip(self._events, self._event_data, strict=True):
            if kept[_ID] > after:
                out.append(_event(kept, data))
                if len(out) >= limit:
                    break
        return out

    async def job_events(self, job_id: str, limit: int = JOB_EVENTS) -> list[Event]:
        mine: list[Event] = []
        if limit > 0:
            # newest first: a live job's are near the end
            for kept, data in zip(reversed(self._events), reversed(self._event_data), strict=True):
                if kept[1] == job_id and not (data and isinstance(data.get("run"), str)):
                    mine.append(_event(kept, data))
                    if len(mine) == limit:
                        break
        return mine[::-1]

    async def beat(self, info: WorkerInfo, ttl: float) -> None:
        now = self._clock()
        info.last_seen = now
        self._workers[info.id] = (info, now + ttl)

    async def workers(self) -> list[WorkerInfo]:
        now = self._clock()
        return [info for info, expires in self._workers.values() if expires > now]

    async def remove_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)
