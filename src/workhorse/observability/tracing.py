"""OpenTelemetry tracing (``pip install 'workhorse[otel]'``): ``instrument(app)`` in the
module that builds the app, so producers and workers both run it.

The enqueuing span's context travels to the job across processes: at enqueue, a
``workhorse.enqueue`` span is made a child of the caller's current span, and its W3C
``traceparent`` is kept in the store beside the job (key ``trace:JOB_ID``, written before
the job, so no worker can claim the job first). The worker reads it back and makes
``workhorse.claim``, ``workhorse.run`` (current while the handler runs, so the task's own
spans nest under it) and ``workhorse.finish`` spans of the same trace.

Flow steps follow from that: a run's entry steps are enqueued under the span that started
the run, and a step's follow-ups inside its ``workhorse.run`` span, so each step's spans are
children of the span that started the run or emitted its trigger. A hook's call is a
``workhorse.hook NAME`` span in the listener's process, linked to the job's trace (a link,
not a parent: the event may be read long after, and by a process of its own).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from workhorse.client import Client, HasClient, HookCall, client_of
from workhorse.errors import ConfigError
from workhorse.job import Lease, NewJob, Outcome

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("workhorse.tracing")

# A job may wait long before it runs; its trace context waits with it.
TRACE_TTL = 7 * 86_400.0


def trace_key(job_id: str) -> str:
    return f"trace:{job_id}"


def _otel() -> Any:
    try:
        from opentelemetry import context, propagate, trace
    except ImportError:
        raise ConfigError("tracing needs OpenTelemetry: pip install 'workhorse[otel]'") from None
    return context, propagate, trace


def instrument(app: Client | HasClient, tracer: Tracer | None = None) -> Tracing:
    """Trace this app's enqueues and the attempts its workers run (idempotent)."""
    client = client_of(app)
    for existing in client.instruments:
        if isinstance(existing, Tracing):
            return existing
    tracing = Tracing(tracer)
    client.instruments.append(tracing)
    return tracing


def of(client: Client) -> Tracing | None:
    """The client's tracing, if ``instrument`` was called."""
    return next((i for i in client.instruments if isinstance(i, Tracing)), None)


class Tracing:
    def __init__(self, tracer: Tracer | None = None) -> None:
        _, _, trace = _otel()
        self.tracer: Tracer = tracer or trace.get_tracer("workhorse")

    async def enqueuing(self, client: Client, news: Sequence[NewJob]) -> None:
        _, propagate, trace = _otel()
        for new in news:
            with self.tracer.start_as_current_span(
                f"workhorse.enqueue {new.task}",
                kind=trace.SpanKind.PRODUCER,
                attributes=_attributes(new.id, new.task, new.queue),
            ):
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                if carrier:
                    await client.backend.kv_set(
                        trace_key(new.id), orjson.dumps(carrier).decode(), TRACE_TTL
                    )

    async def _stored(self, client: Client, job_id: str) -> Any:
        """The job's trace context as its enqueue stored it, or None."""
        _, propagate, _ = _otel()
        raw = await client.backend.kv_get(trace_key(job_id))
        if raw:
            with contextlib.suppress(ValueError, TypeError):
                return propagate.extract(orjson.loads(raw))
        return None  # none, or unreadable: a trace of its own

    @contextlib.asynccontextmanager
    async def delivering(self, client: Client, hook: str, event: HookCall) -> AsyncIterator[object]:
        """A hook's call as a span, linked to the trace of the job the event is about."""
        _, _, trace = _otel()
        links = []
        if event.job_id is not None:
            try:
                stored = await self._stored(client, event.job_id)
            except Exception:  # the hook runs untraced rather than not at all
                log.exception("event %d: could not read its job's trace context", event.id)
                stored = None
            job = trace.get_current_span(stored).get_span_context() if stored else None
            if job is not None and job.is_valid:
                links.append(trace.Link(job))
        attributes = {
            "workhorse.hook": hook,
            "workhorse.event": event.type,
            # An attribute is a 64-bit int at most: a PostgreSQL position goes as text.
            "workhorse.event.id": event.id if event.id < 2**63 else str(event.id),
            **_attributes(event.job_id or "", event.task or "", event.queue or ""),
        }
        with self.tracer.start_as_current_span(
            f"workhorse.hook {hook}",
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        ) as span:
            yield span

    async def attempt(self, client: Client, lease: Lease, claimed_at: int) -> Attempt:
        """Spans for one attempt: its claim (from ``claimed_at``, ns) now, its run from now."""
        context, _, trace = _otel()
        parent = await self._stored(client, lease.job_id)
        attributes = {
            **_attributes(lease.job_id, lease.task, lease.queue),
            "workhorse.attempt": lease.attempts,
        }
        claim = self.tracer.start_span(
            f"workhorse.claim {lease.task}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            start_time=claimed_at,
        )
        claim.end()
        run = self.tracer.start_span(
            f"workhorse.run {lease.task}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )
        token = context.attach(trace.set_span_in_context(run))
        return Attempt(self.tracer, run, token)


class Attempt:
    """The open spans of one attempt."""

    def __init__(self, tracer: Tracer, run: Span, token: object) -> None:
        self.tracer = tracer
        self.run = run
        self._token = token
        self._finish: Span | None = None

    def ran(self, outcome: Outcome) -> None:
        """The handler is done: the outcome goes to the store next (the finish span)."""
        _, _, trace = _otel()
        self.run.set_attribute("workhorse.outcome", outcome.kind)
        if outcome.error is not None:
            self.run.set_status(trace.Status(trace.StatusCode.ERROR, outcome.error.get("message")))
        self._finish = self.tracer.start_span(
            "workhorse.finish",
            context=trace.set_span_in_context(self.run),
            attributes={"workhorse.outcome": outcome.kind},
        )

    def close(self, written: bool | None) -> None:
        """``written``: whether the store took the outcome (None: not known)."""
        context, _, _ = _otel()
        if self._finish is not None:
            if written is not None:
                self._finish.set_attribute("workhorse.written", written)
            self._finish.end()
        self.run.end()
        context.detach(self._token)


def _attributes(job_id: str, task: str, queue: str) -> dict[str, Any]:
    return {
        "messaging.system": "workhorse",
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
        "workhorse.task": task,
    }


def now_ns() -> int:
    return time.time_ns()
