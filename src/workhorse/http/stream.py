"""The event log over HTTP: a page of JSON, or server-sent events that resume from
``Last-Event-ID`` (each event's id is the log's cursor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from workhorse.client import Client
from workhorse.events import run_of
from workhorse.http.closing import closing
from workhorse.http.models import event_out

_PAGE = 500
# A job's own stream ends with the event of its outcome.
_LAST = frozenset({"job.completed", "job.failed", "job.cancelled"})


async def sse(
    client: Client, after: int, poll: float, job_id: str | None = None
) -> AsyncIterator[bytes]:
    """Every event after ``after`` (of one job, with ``job_id``), then new ones as they
    are written, until the client goes away or the job ended. A comment line every idle
    poll keeps proxies from closing the stream."""
    yield b"retry: 1000\n\n"
    while True:
        events = await client.events(after, _PAGE)
        for e in events:
            after = e.id
            if job_id is not None and (e.job_id != job_id or run_of(e) is not None):
                continue  # a step's own events are its run's (GET /runs/{id}/events)
            # pydantic writes ints of any size (orjson stops at 64 bits: PostgreSQL's ids).
            data = event_out(e).model_dump_json().encode()
            yield b"id: %d\nevent: %s\ndata: %s\n\n" % (e.id, e.type.encode(), data)
            if job_id is not None and e.type in _LAST:
                return
        if len(events) < _PAGE:
            await asyncio.sleep(poll)
            if closing():
                return
            if not events:
                yield b": idle\n\n"
