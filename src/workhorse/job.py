"""The records that cross the backend contract: jobs, leases, outcomes, events."""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal


class JobState(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"  # queued with a due time in the future (delay, backoff)
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE_STATES = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.ACTIVE})
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
STATES = tuple(JobState)

# Queues private to one process (an HTTP server's inline calls, ``http.<random>``): no
# worker consumes them, so queue listings leave them out; their jobs stay readable by id
# and in their task's listing.
PRIVATE_QUEUE_PREFIX = "http."


def private_queue(name: str) -> bool:
    return name.startswith(PRIVATE_QUEUE_PREFIX)


# The stall budget a job gets when neither its task nor the settings set one: a few
# worker deaths (a deploy's kill, a lost machine) are survived, a job that kills every
# worker it lands on is stopped.
MAX_STALLS = 3


# Random parts of ids, drawn 256 at a time: one getrandom() per id was a tenth of a bulk
# enqueue's client CPU per job. A forked child starts with none (or it would repeat the
# parent's ids).
_RANDOM: list[str] = []
_RANDOM_BATCH = 256
os.register_at_fork(after_in_child=_RANDOM.clear)


# Every id a job can have: new_job_id's and a schedule tick's are hex; a flow step's job
# is "r", its run's id, then hex (flows/keys.py). Routes and cursors admit exactly these.
JOB_ID_PATTERN = r"r?[0-9a-f]{1,64}"
_JOB_ID = re.compile(JOB_ID_PATTERN)


def is_job_id(text: str) -> bool:
    return _JOB_ID.fullmatch(text) is not None


def new_job_id() -> str:
    """A 32-hex-digit id that sorts by creation time (milliseconds first, then randomness)."""
    try:
        tail = _RANDOM.pop()
    except IndexError:
        raw = os.urandom(10 * _RANDOM_BATCH).hex()
        _RANDOM.extend(raw[i : i + 20] for i in range(20, len(raw), 20))
        tail = raw[:20]
    return f"{time.time_ns() // 1_000_000:012x}{tail}"


def new_job_ids(n: int) -> list[str]:
    """``n`` ids made at once (a bulk call's), ascending: one moment's milliseconds, then
    each its own random part, sorted. Drawn from os.urandom here, not the shared supply."""
    raw = os.urandom(10 * n).hex()
    head = f"{time.time_ns() // 1_000_000:012x}"
    return [head + tail for tail in sorted([raw[i : i + 20] for i in range(0, 20 * n, 20)])]


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _micros(ts: float) -> int:
    """Epoch seconds as the whole microseconds ``to_datetime`` shows."""
    return round(datetime.fromtimestamp(ts, UTC).timestamp() * 1e6)


def _first_at(micro: int) -> float:
    """The smallest float whose ``_micros`` is ``micro`` or more (bisection over floats)."""
    low, high = (micro - 2) / 1e6, (micro + 2) / 1e6
    while math.nextafter(low, high) < high:
        mid = (low + high) / 2
        if mid in (low, high):
            break
        if _micros(mid) >= micro:
            high = mid
        else:
            low = mid
    return high


@dataclass(slots=True)
class NewJob:
    """An enqueue request, already validated and encoded."""

    id: str
    task: str
    queue: str
    data: bytes
    priority: int = 0
    delay: float = 0.0  # seconds from the backend's now
    at: float | None = None  # absolute due time (epoch seconds); wins over delay
    max_attempts: int = 1
    timeout: float | None = None
    lease: float | None = None
    dedup_key: str | None = None
    replace: bool = False  # a live, not yet started job with the key takes this payload
    keep_for: float | None = None  # seconds the finished record is kept; None: the settings'
    hold: bool = False  # a run() caller waits: keep the record until it has the result
    max_stalls: int = MAX_STALLS  # times a try whose worker died is run again


@dataclass(slots=True)
class EnqueueResult:
    id: str
    created: bool  # False: a live job with the same dedup key was returned instead
    state: JobState
    replaced: bool = False  # that live job took the new payload (``NewJob.replace``)


@dataclass(slots=True)
class Lease:
    """A worker's time-limited claim on one job, with everything needed to run it."""

    job_id: str
    token: str
    task: str
    queue: str
    data: bytes
    attempts: int
    max_attempts: int
    timeout: float | None
    lease: float
    created_at: float
    stalls: int = 0  # tries of this job whose worker died (the worker runs a suspect alone)


@dataclass(frozen=True, slots=True)
class Claim:
    """A key written with a job (``Backend.enqueue_claimed``): set unless live (no ttl),
    and neither it nor the job while ``unless`` is live."""

    key: str
    value: str
    unless: str | None = None


# What a claimed write answers per job: whether it set the claim's key, and the job's
# result when it wrote the job (``Backend.enqueue_claimed``).
Claimed = tuple[bool, EnqueueResult | None]

# A flow step whose follow-ups could not be written runs again this soon, attempt refunded.
REENQUEUE_DELAY = 1.0

OutcomeKind = Literal["completed", "failed", "retry", "cancelled"]


@dataclass(slots=True)
class RunEnd:
    """A flow run's end carried by the finish of the step that ends it
    (``Capabilities.finish_ends``): ``key`` is set to ``mark`` unless present; if this
    set it, ``entry`` (the run's retention entry, when it has one) is set to ``mark`` too,
    ``live`` is deleted while it holds ``name`` and then ``event`` is logged."""

    key: str
    mark: str
    live: str
    name: str
    event: Event
    entry: str | None = None


@dataclass(slots=True)
class Outcome:
    kind: OutcomeKind
    result: bytes | None = None  # encoded JSON, for completed
    error: dict[str, Any] | None = None  # {"type", "message", "traceback"}
    delay: float = 0.0  # for retry: seconds from the backend's now
    refund: bool = False  # for retry: the attempt does not count (shutdown, unknown task)
    logs: list[dict[str, Any]] = field(default_factory=list)
    logs_dropped: int = 0  # older lines of this attempt the worker dropped before writing
    # Set by a store whose finish is idempotent on replay (PostgreSQL) when it first sends
    # this outcome: the same Outcome sent again is the same call, a new one is not.
    call: str | None = None
    # A completed flow step's follow-ups, for a store whose finish writes them with the
    # outcome (``Capabilities.finish_followups``): each as ``enqueue_claimed`` would, only
    # if the outcome is written, in the same step.
    followups: Sequence[tuple[Claim, NewJob]] = ()
    # Set by that finish when it writes the outcome: each follow-up's answer (a finish
    # resent after a lost reply answers as enqueue_claimed sent twice: nothing set or
    # written). None: the outcome was refused, and so were its follow-ups.
    followups_claimed: list[Claimed] | None = None
    # A flow step's own events (step.started, its step.completed ...), for a store whose
    # finish writes them with the outcome (``Capabilities.finish_events``): published as
    # ``publish`` would, before the outcome's own event, only if the outcome is written.
    events: Sequence[Event] = ()
    # A flow run's end, for a store whose finish writes it with a completed outcome
    # (``Capabilities.finish_ends``), after the outcome's event, only if it is written.
    end: RunEnd | None = None
    # Set by that finish when it writes the outcome: (it set the end marker, it deleted
    # the live entry and logged the event). None: the outcome was refused, and the end.
    ended: tuple[bool, bool] | None = None
    # Stored before this outcome is written (the worker's finisher waits for it): a flow
    # step's latest event it published apart (``Publisher.add``), so its events never come
    # after its outcome.
    after: asyncio.Future[None] | None = None


@dataclass(slots=True)
class Job:
    """A job's record as the store holds it."""

    id: str
    task: str
    queue: str
    state: JobState
    data: Any
    priority: int
    attempts: int  # attempts that ran to an outcome, and the running one
    max_attempts: int
    created_at: datetime
    run_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    timeout: float | None = None
    worker: str | None = None
    lease_expires_at: datetime | None = None
    dedup_key: str | None = None
    keep_for: float | None = None  # its own retention, seconds after it finished
    stalls: int = 0  # tries whose worker died (the lease expired); never counted in attempts
    max_stalls: int = MAX_STALLS

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


@dataclass(frozen=True, slots=True)
class JobKey:
    """A job's place in a newest-first listing (creation time, then id): a page ends at
    one, and the next starts after it (``Backend.query(after=...)``)."""

    id: str
    created: float  # epoch seconds, as the job's ``created_at`` gives them

    @classmethod
    def of(cls, job: Job) -> JobKey:
        return cls(job.id, job.created_at.timestamp())

    def span(self) -> tuple[float, float]:
        """The stored times ``[low, high)`` a reader sees as this key's whole microsecond: a
        store that keeps finer times than ``created_at`` shows compares with these bounds when
        the key's job is gone (rounding the stored time in SQL differs from the datetime's
        rounding for about one time in eight)."""
        micro = _micros(self.created)
        return _first_at(micro), _first_at(micro + 1)

    def cursor(self) -> str:
        """As text, ``CREATED:ID``: the cursor the REST API, the dashboard and the CLI give."""
        return f"{self.created!r}:{self.id}"

    @classmethod
    def from_cursor(cls, text: str | None) -> JobKey | None:
        """The key a cursor names; None (start at the newest) for none or a damaged one,
        or one past any store's clock (PostgreSQL refuses such a time)."""
        created, sep, ident = (text or "").partition(":")
        if not sep or not is_job_id(ident):
            return None
        try:
            at = float(created)
        except ValueError:
            return None
        return cls(ident, at) if math.isfinite(at) and 0 <= at < 2**40 else None


@dataclass(slots=True)
class Event:
    """A durable record of something that happened. ``id`` is the log's cursor."""

    type: str
    job_id: str | None = None
    task: str | None = None
    queue: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0
    id: int = 0


@dataclass(slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: dict[str, int]
    started_at: float
    active: int = 0
    processed: int = 0
    last_seen: float = 0.0
    tasks: list[str] = field(default_factory=list)  # the task names it knows (its registry)
    paused: bool = False  # started paused, or paused since: claims nothing
    flows: list[str] = field(default_factory=list)  # the flows whose steps it runs
