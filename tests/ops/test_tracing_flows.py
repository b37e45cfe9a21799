"""OpenTelemetry into flow steps and hooks (the SDK's in-memory exporter): each step's
spans are children of the span that started the run or emitted its trigger; a hook's call
is a span linked to the trace of the job its event is about."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from workhorse.hooks import JobEvent
from workhorse.observability.tracing import instrument

from .ops_app import make_flow


async def test_flow_steps_and_hooks_carry_the_trace_that_started_the_run() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    app = make_flow(url="memory://")
    instrument(app, tracer)
    greeted: list[JobEvent] = []

    @app.on("job.completed", task="send_welcome", name="greeted")
    async def on_greeted(event: JobEvent) -> None:
        greeted.append(event)

    async with app:
        await app.start_listener(from_start=True)
        await app.start_worker()
        with tracer.start_as_current_span("signup form") as form:
            run = await app.flows.start("signup", {"who": "ann"})
        info = await run.wait(15)
        assert info.state == "completed", info
        deadline = time.monotonic() + 10
        while not greeted and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert greeted
        await app.stop_listener()
        await app.stop_workers()

    spans = exporter.get_finished_spans()
    by_name: dict[str, ReadableSpan] = {s.name: s for s in spans}

    def parent_of(name: str) -> int | None:
        parent = by_name[name].parent
        return None if parent is None else parent.span_id

    def span_id(name: str) -> int:
        return by_name[name].context.span_id

    trace_id = form.get_span_context().trace_id
    # The entry step: enqueued under the span that started the run.
    assert parent_of("workhorse.enqueue register") == form.get_span_context().span_id
    assert parent_of("workhorse.run register") == span_id("workhorse.enqueue register")
    # A step on an emitted trigger, and one after a step (through a delay wait): enqueued
    # inside the emitting step's run span.
    for step in ("send_welcome", "follow_up"):
        assert parent_of(f"workhorse.enqueue {step}") == span_id("workhorse.run register")
        assert parent_of(f"workhorse.run {step}") == span_id(f"workhorse.enqueue {step}")
    flow_spans = [s for s in spans if not s.name.startswith("workhorse.hook")]
    assert {s.context.trace_id for s in flow_spans} == {trace_id}

    hook = by_name["workhorse.hook greeted"]
    assert hook.parent is None  # its own trace (read later, maybe elsewhere), linked:
    assert [link.context.span_id for link in hook.links] == [
        span_id("workhorse.enqueue send_welcome")
    ]
    assert hook.links[0].context.trace_id == trace_id
    assert hook.attributes is not None
    assert hook.attributes["messaging.message.id"] == greeted[0].job_id
    assert hook.attributes["workhorse.event"] == "job.completed"
