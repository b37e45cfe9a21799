"""OpenTelemetry: one trace from the producer's span through the job's claim, run and
finish spans in a worker process (each process with the SDK's in-memory exporter)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from workhorse import Workhorse
from workhorse.observability.tracing import instrument

from .procs import workhorse


@pytest.mark.slow
async def test_a_trace_spans_the_producer_and_the_worker_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spans_file = tmp_path / "worker-spans.json"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    producer = Workhorse(url=url)

    @producer.task
    async def charge(data: dict[str, int]) -> int: ...  # the producer's side: the name

    instrument(producer, tracer)
    env = {"SPANS": str(spans_file)}
    with workhorse("worker", "otel_app:app", "--url", url, log=tmp_path / "w.log", env=env):
        try:
            with tracer.start_as_current_span("checkout") as checkout:
                handle = await producer.enqueue("charge", {"cents": 250})
            job = await producer.wait(handle.id, 15)
            assert job.result == 250
        finally:
            await producer.close()
    deadline = time.monotonic() + 10
    while not spans_file.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the worker writes them as it exits
    worker_spans: list[dict[str, Any]] = orjson.loads(spans_file.read_bytes())

    trace_id = f"{checkout.get_span_context().trace_id:032x}"
    mine = {s.name: s for s in exporter.get_finished_spans()}
    enqueue = mine["workhorse.enqueue charge"]
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == checkout.get_span_context().span_id
    assert enqueue.attributes is not None
    assert enqueue.attributes["messaging.message.id"] == handle.id

    theirs = {s["name"]: s for s in worker_spans}
    assert set(theirs) >= {
        "workhorse.claim charge",
        "workhorse.run charge",
        "workhorse.finish",
        "charge card",
    }
    assert {s["trace_id"] for s in worker_spans} == {trace_id}  # one trace, two processes
    enqueue_id = f"{enqueue.context.span_id:016x}"
    assert theirs["workhorse.claim charge"]["parent_id"] == enqueue_id
    assert theirs["workhorse.run charge"]["parent_id"] == enqueue_id
    run_id = theirs["workhorse.run charge"]["span_id"]
    assert theirs["workhorse.finish"]["parent_id"] == run_id
    assert theirs["charge card"]["parent_id"] == run_id  # the task's own span nests
    assert theirs["workhorse.run charge"]["attributes"]["workhorse.outcome"] == "completed"
    assert theirs["workhorse.finish"]["attributes"]["workhorse.written"] is True
