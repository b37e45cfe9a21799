"""A small reference model of the backend contract, written apart from ``memory.py``.

It knows only what ``backends/base.py`` and ``docs`` promise: states, attempts counted at
claim (and given back, as a stall, when the lease expires), priority then due time then
FIFO, owner-checked renew and finish, dedup keys (per queue) held by live jobs, cancel,
retry, purge and reclaim. Where the contract leaves an order open (jobs requeued by one
``finish`` or one ``reclaim_expired`` call share a due time and a sequence number; jobs
finished in one call share a finish time), the model keeps them tied and the comparison
accepts any order among them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

QUEUED, ACTIVE = "queued", "active"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})

Key = tuple[int, float, int]


@dataclass
class MJob:
    id: str
    queue: str
    data: Any
    priority: int
    max_attempts: int
    dedup_key: str | None
    run_at: float
    seq: int
    state: str = QUEUED
    attempts: int = 0
    stalls: int = 0
    max_stalls: int = 3
    token: str | None = None
    expires_at: float | None = None
    cancel_requested: bool = False
    finished_at: float | None = None
    result: Any = None

    def key(self) -> Key:
        return (-self.priority, self.run_at, self.seq)


@dataclass
class Expected:
    """What one enqueue must answer."""

    id: str
    created: bool
    state: str
    replaced: bool


@dataclass
class Model:
    now: float
    jobs: dict[str, MJob] = field(default_factory=dict)
    dedup: dict[tuple[str, str], str] = field(default_factory=dict)  # (queue, key) -> id
    paused: set[str] = field(default_factory=set)
    seq: int = 0
    batch_tie: list[str] = field(default_factory=list)

    # -- helpers ---------------------------------------------------------------------
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def public_state(self, job: MJob) -> str:
        if job.state == QUEUED and job.run_at > self.now:
            return "scheduled"
        return job.state

    def _end(self, job: MJob, state: str) -> None:
        job.state = state
        job.finished_at = self.now
        job.token = None
        job.expires_at = None
        if job.dedup_key is not None and self.dedup.get((job.queue, job.dedup_key)) == job.id:
            del self.dedup[job.queue, job.dedup_key]

    def _requeue(self, job: MJob, run_at: float, seq: int) -> None:
        job.state = QUEUED
        job.run_at = run_at
        job.seq = seq
        job.token = None
        job.expires_at = None
        job.cancel_requested = False

    def owned(self, job_id: str, token: str) -> MJob | None:
        job = self.jobs.get(job_id)
        if job is None or job.state != ACTIVE or job.token != token:
            return None
        return job

    # -- producing -------------------------------------------------------------------
    def begin_batch(self) -> None:
        self.batch_tie = []

    def end_batch(self) -> None:
        """Open in the contract: where a job replaced by a batch (debounce) stands in line
        against the jobs that batch creates after it. Memory applies a batch job by job;
        PostgreSQL inserts the new jobs first and replaces after. They tie."""
        if self.batch_tie:
            group = self.next_seq()
            for job_id in self.batch_tie:
                job = self.jobs[job_id]
                if job.state == QUEUED:
                    job.seq = group
        self.batch_tie = []

    def enqueue(
        self,
        job_id: str,
        queue: str,
        data: Any,
        priority: int,
        delay: float,
        max_attempts: int,
        dedup_key: str | None,
        replace: bool,
        max_stalls: int = 3,
    ) -> Expected:
        if dedup_key is not None and (queue, dedup_key) in self.dedup:
            live = self.jobs[self.dedup[queue, dedup_key]]
            replaced = replace and live.state == QUEUED
            if replaced:
                live.data = data
                live.priority = priority
                live.max_attempts = max_attempts
                live.max_stalls = max_stalls
                self._requeue(live, self.now + delay, self.next_seq())
                self.batch_tie.append(live.id)
            return Expected(live.id, False, self.public_state(live), replaced)
        job = MJob(
            job_id,
            queue,
            data,
            priority,
            max_attempts,
            dedup_key,
            self.now + delay,
            self.next_seq(),
            max_stalls=max_stalls,
        )
        self.jobs[job_id] = job
        if self.batch_tie:
            self.batch_tie.append(job_id)
        if dedup_key is not None:
            self.dedup[queue, dedup_key] = job_id
        return Expected(job_id, True, self.public_state(job), False)

    # -- consuming -------------------------------------------------------------------
    def candidates(self, queue: str) -> list[MJob]:
        """The due jobs of ``queue`` in claim order (ties keep their shared key)."""
        if queue in self.paused:
            return []
        due = [
            j
            for j in self.jobs.values()
            if j.queue == queue and j.state == QUEUED and j.run_at <= self.now
        ]
        return sorted(due, key=MJob.key)

    def check_claim(self, queues: Sequence[str], limit: int, claimed: Sequence[str]) -> str | None:
        """Whether ``claimed`` (ids in the backend's order) is a valid answer; None if so,
        else what is wrong. Queues are served in the order given, each in key order;
        among jobs with equal keys any choice and order is valid."""
        pos = 0
        for queue in queues:
            room = limit - pos
            if room <= 0:
                break
            cands = self.candidates(queue)
            take = min(room, len(cands))
            segment = list(claimed[pos : pos + take])
            pos += take
            if len(segment) != take:
                return f"queue {queue}: expected {take} jobs, got {segment}"
            by_id = {j.id: j for j in cands}
            if any(i not in by_id for i in segment):
                return f"queue {queue}: claimed {segment}, due in order: {[j.id for j in cands]}"
            if len(set(segment)) != len(segment):
                return f"queue {queue}: a job claimed twice in {segment}"
            keys = [by_id[i].key() for i in segment]
            if keys != sorted(keys):
                return f"queue {queue}: claim order {segment} breaks priority/FIFO {keys}"
            if keys:
                top = keys[-1]
                missing = [j.id for j in cands if j.key() < top and j.id not in segment]
                if missing:
                    return f"queue {queue}: skipped {missing} that come before {segment[-1]}"
        if pos != len(claimed):
            return f"claimed {len(claimed)} jobs, expected {pos}: {list(claimed)}"
        return None

    def apply_claim(self, job_id: str, token: str, span: float) -> MJob:
        job = self.jobs[job_id]
        job.state = ACTIVE
        job.attempts += 1
        job.token = token
        job.expires_at = self.now + span
        return job

    def renew(self, items: Iterable[tuple[str, str, float]]) -> tuple[set[str], set[str]]:
        lost, cancel = set(), set()
        for job_id, token, span in items:
            job = self.owned(job_id, token)
            if job is None:
                lost.add(job_id)
                continue
            job.expires_at = self.now + span
            if job.cancel_requested:
                cancel.add(job_id)
        return lost, cancel

    def finish(self, items: Sequence[tuple[str, str, str, float, bool, Any]]) -> list[bool]:
        """``items``: (job id, token, kind, retry delay, refund, result)."""
        group = self.next_seq()  # retries of one call share their place in line
        accepted = []
        for job_id, token, kind, delay, refund, result in items:
            job = self.owned(job_id, token)
            if job is None:
                accepted.append(False)
                continue
            accepted.append(True)
            if kind == COMPLETED:
                job.result = result
                self._end(job, COMPLETED)
            elif kind == "retry":
                if refund:
                    job.attempts -= 1
                self._requeue(job, self.now + delay, group)
            else:
                self._end(job, kind)
        return accepted

    def expired(self) -> list[str]:
        return [
            j.id
            for j in self.jobs.values()
            if j.state == ACTIVE and j.expires_at is not None and j.expires_at <= self.now
        ]

    def reclaim(self) -> set[str]:
        group = self.next_seq()
        ids = self.expired()
        for job_id in ids:
            job = self.jobs[job_id]
            job.attempts -= 1  # a try whose worker died is a stall, not an attempt
            job.stalls += 1
            if job.cancel_requested:
                self._end(job, CANCELLED)
            elif job.stalls > job.max_stalls:
                self._end(job, FAILED)
            else:
                self._requeue(job, self.now, group)
        return set(ids)

    # -- controlling -----------------------------------------------------------------
    def cancel(self, job_id: str) -> str | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        if job.state == QUEUED:
            self._end(job, CANCELLED)
        elif job.state == ACTIVE:
            job.cancel_requested = True
        return self.public_state(job)

    def retry(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.state not in (FAILED, CANCELLED):
            return False
        if job.dedup_key is not None:
            if (job.queue, job.dedup_key) in self.dedup:
                return False
            self.dedup[job.queue, job.dedup_key] = job.id
        job.attempts = job.stalls = 0
        job.finished_at = None
        job.result = None
        self._requeue(job, self.now, self.next_seq())
        return True

    def purge_plan(
        self,
        states: Iterable[str],
        older_than: float | None,
        keep_last: int | None,
        queue: str | None,
    ) -> tuple[set[str], list[tuple[set[str], int]]]:
        """(surely deleted, [(a tied group, how many of it go)]). Jobs finished in one call
        share their finish time, so which of them counts as the newer is left open."""
        sure: set[str] = set()
        open_groups: list[tuple[set[str], int]] = []
        queues = {j.queue for j in self.jobs.values()} if queue is None else {queue}
        for state, q in itertools.product(set(states) & FINISHED, queues):  # keep_last is per queue
            recs = [j for j in self.jobs.values() if j.state == state and j.queue == q]
            recs.sort(key=lambda j: -(j.finished_at or 0.0))
            tie: set[str] = set()
            kept = 0  # members of the tie that stay
            if keep_last is not None and 0 < keep_last < len(recs):
                edge = recs[keep_last].finished_at
                first = next(i for i, r in enumerate(recs) if r.finished_at == edge)
                if first < keep_last:
                    tie = {r.id for r in recs if r.finished_at == edge}
                    kept = keep_last - first
            for i, job in enumerate(recs):
                when = job.finished_at or 0.0
                too_old = older_than is not None and when <= self.now - older_than
                if too_old:
                    sure.add(job.id)
                elif job.id in tie:
                    continue
                elif keep_last is not None and i >= keep_last:
                    sure.add(job.id)
            tie -= sure
            if tie:
                open_groups.append((tie, len(tie) - kept))
        return sure, open_groups

    def forget(self, ids: Iterable[str]) -> None:
        for job_id in ids:
            self.jobs.pop(job_id, None)


INF = math.inf
