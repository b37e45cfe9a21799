"""The tracing test's worker app: an OpenTelemetry SDK with an in-memory exporter whose
spans are written to $SPANS as JSON when the process exits."""

from __future__ import annotations

import atexit
import os

import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from workhorse import Workhorse
from workhorse.observability.tracing import instrument

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

app = Workhorse()
instrument(app)


@app.task
async def charge(data: dict[str, int]) -> int:
    with trace.get_tracer("shop").start_as_current_span("charge card"):
        return data["cents"]


def spans_json(spans: object) -> bytes:
    return orjson.dumps(
        [
            {
                "name": s.name,
                "trace_id": f"{s.context.trace_id:032x}",
                "span_id": f"{s.context.span_id:016x}",
                "parent_id": None if s.parent is None else f"{s.parent.span_id:016x}",
                "attributes": dict(s.attributes or {}),
            }
            for s in spans  # type: ignore[attr-defined]
        ]
    )


@atexit.register
def _dump() -> None:
    path = os.environ.get("SPANS")
    if path:
        with open(path, "wb") as f:
            f.write(spans_json(exporter.get_finished_spans()))
