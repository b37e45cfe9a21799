"""The in-process event bus, and the one place that builds the job.* events the worker,
the job context and the client emit. The durable log lives in the backend; this bus tells
code in this process what its own worker and producers just did."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from workhorse.job import Event, Lease, Outcome

log = logging.getLogger("workhorse.events")

JOB_EVENTS = (
    "job.queued",
    "job.started",
    "job.progress",
    "job.completed",
    "job.failed",
    "job.retrying",
    "job.cancelled",
    "job.stalled",
)

Handler = Callable[[Event], Awaitable[None] | None]

# The log's retention keeps events a hook group has not read: each group writes its floor
# (the oldest cursor of its partitions) under this kv prefix, and the stores trim the log
# to ``max_events`` except from the lowest floor on (the floor's own event stays, so a
# listener can tell a trim past its cursor), up to HOLD_FACTOR * max_events events.
HOLD_PREFIX = "hookhold:"
HOLD_FACTOR = 10

_OUTCOME_EVENTS = {
    "completed": "job.completed",
    "failed": "job.failed",
    "retry": "job.retrying",
    "cancelled": "job.cancelled",
}


def run_of(event: Event) -> str | None:
    """The flow run an event belongs to (its ``data["run"]``): such events are read by their
    run (``Backend.run_events``), not as their job's (``Backend.job_events``)."""
    run = event.data.get("run") if event.data else None
    return run if isinstance(run, str) else None


def outcome_type(outcome: Outcome) -> str:
    """The event an outcome written by the worker is: a refunded retry without an error
    (shutdown, unknown task) only puts the job back, so it is ``job.queued``."""
    if outcome.kind == "retry" and outcome.refund and outcome.error is None:
        return "job.queued"
    return _OUTCOME_EVENTS[outcome.kind]


def recorded(outcome: Outcome, attempt: int) -> tuple[str, dict[str, Any] | None]:
    """The durable event a store writes in the same step as an outcome: its type and its
    data (the Lua and SQL backends write the same; the contract suite keeps them equal)."""
    kind = outcome.kind
    if kind == "completed":
        return "job.completed", {"attempt": attempt}
    if kind == "retry":
        return "job.retrying", {"attempt": attempt, "delay": outcome.delay, "error": outcome.error}
    if kind == "failed":
        return "job.failed", {"attempt": attempt, "error": outcome.error}
    return "job.cancelled", None


def finished(type_: str, lease: Lease, outcome: Outcome) -> Event:
    """``type_`` (from ``outcome_type``) for an attempt's outcome: the attempt, and the
    error when there is one."""
    data: dict[str, Any] = {"attempt": lease.attempts}
    if outcome.error is not None:
        data["error"] = outcome.error
    return Event(type_, lease.job_id, lease.task, lease.queue, data, time.time())


def started(lease: Lease, worker: str) -> Event:
    return Event(
        "job.started",
        lease.job_id,
        lease.task,
        lease.queue,
        {"attempt": lease.attempts, "worker": worker},
        time.time(),
    )


def progress(lease: Lease, value: Any) -> Event:
    return Event(
        "job.progress", lease.job_id, lease.task, lease.queue, {"progress": value}, time.time()
    )


def queued(job_id: str, task: str, queue: str) -> Event:
    return Event("job.queued", job_id, task, queue, {}, time.time())


def retried(previous: bytes | None, by: str | None) -> dict[str, Any]:
    """The data of the ``job.queued`` event a retry writes; a retry with a new payload also
    names who changed it and keeps the payload it replaced (``previous``: JSON as stored,
    or its text when it does not decode, as a quarantined record's may not)."""
    if previous is None:
        return {"retried": True}
    try:
        old = orjson.loads(previous)
    except orjson.JSONDecodeError:
        old = previous.decode("utf-8", "replace")
    return {"retried": True, "edited": {"by": by or "", "previous": old}}


def cron_fired(schedule: str, job_id: str, task: str, queue: str, tick: float) -> Event:
    """A schedule's tick this process fired (claimed and enqueued)."""
    return Event(
        "cron.fired", job_id, task, queue, {"schedule": schedule, "tick": tick}, time.time()
    )


def stalled(job_id: str) -> Event:
    """A job whose lease expired, reclaimed by this process's worker."""
    return Event("job.stalled", job_id, at=time.time())


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[Handler, str | None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # The types with a handler ("*": every type): a hot path tests membership in it
        # instead of calling wants() (a call per job is measurable there).
        self.wanted: set[str] = set()
        self.every = False  # "*" in wanted: a hot path reads a flag, not the set, for it

    def on(self, type_: str, handler: Handler, *, task: str | None = None) -> None:
        """Call ``handler(event)`` for each event of ``type_`` ("*" for all)."""
        self._handlers.setdefault(type_, []).append((handler, task))
        self.wanted.add(type_)
        self.every = "*" in self.wanted

    def off(self, type_: str, handler: Handler) -> None:
        left = [h for h in self._handlers.get(type_, []) if h[0] is not handler]
        if left:
            self._handlers[type_] = left
        else:
            self._handlers.pop(type_, None)
            self.wanted.discard(type_)
            self.every = "*" in self.wanted

    def wants(self, type_: str) -> bool:
        return type_ in self.wanted or "*" in self.wanted

    def emit(self, event: Event) -> None:
        for handler, task in (*self._handlers.get(event.type, ()), *self._handlers.get("*", ())):
            if task is not None and task != event.task:
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    t = asyncio.ensure_future(result)
                    self._tasks.add(t)
                    t.add_done_callback(self._done)
            except Exception:
                log.exception("event handler %r failed on %s", handler, event.type)

    def _done(self, t: asyncio.Task[Any]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.error("event handler failed", exc_info=exc)
