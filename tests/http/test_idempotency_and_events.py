"""Idempotency-Key under concurrency and replay; the event stream resumed after a drop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import uvicorn

from tests.http.conftest import READ, WRITE, Served
from workhorse.http import create_app


@asynccontextmanager
async def listening(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind a real uvicorn on loopback: httpx's ASGI transport buffers a whole
    response, so a stream that never ends needs a socket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(served.app), port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        server.should_exit = True
        await task


async def test_ten_concurrent_posts_with_one_key_create_one_job_and_all_get_its_id(
    served: Served,
) -> None:
    headers = {**WRITE, "Idempotency-Key": "order-42"}
    replies = await asyncio.gather(
        *(
            served.http.post("/api/tasks/noop/jobs", json={"order": 42}, headers=headers)
            for _ in range(10)
        )
    )
    assert {r.status_code for r in replies} == {202}
    ids = {r.json()["id"] for r in replies}
    assert len(ids) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in replies) == 9
    assert (await served.app.counts())["default"]["queued"] == 1
    # A replay after the job finished still returns it and creates nothing.
    (job_id,) = ids
    await served.app.start_worker()
    await served.app.wait(job_id, 10)
    again = await served.http.post("/api/tasks/noop/jobs", json={"order": 42}, headers=headers)
    assert again.json()["id"] == job_id
    assert again.json()["state"] == "completed"
    assert len(await served.app.jobs(task="noop")) == 1


async def test_a_key_reused_with_another_body_is_refused(served: Served) -> None:
    headers = {**WRITE, "Idempotency-Key": "k-1"}
    first = await served.http.post("/api/tasks/noop/jobs", json={"a": 1}, headers=headers)
    assert first.status_code == 202
    other = await served.http.post("/api/tasks/noop/jobs", json={"a": 2}, headers=headers)
    assert (other.status_code, other.json()["error"]["type"]) == (422, "IdempotencyKeyReused")


async def _read_sse(http: object, headers: dict[str, str], want: int) -> list[dict[str, object]]:
    """Read events off the stream until ``want`` arrived, then drop the connection."""
    got: list[dict[str, object]] = []
    async with http.stream("GET", "/api/events", headers=headers) as r:  # type: ignore[attr-defined]
        assert r.headers["content-type"].startswith("text/event-stream")
        event: dict[str, object] = {}
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("data: "):
                event["data"] = orjson.loads(line[6:])
            elif line == "" and "id" in event:
                got.append(event)
                event = {}
                if len(got) == want:
                    break
    return got


async def test_the_event_stream_resumes_from_last_event_id_with_nothing_missed(
    served: Served,
) -> None:
    sse = {**READ, "Accept": "text/event-stream"}
    async with listening(served) as http:
        for _ in range(3):
            await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)
        first = await asyncio.wait_for(_read_sse(http, sse, 2), 10)
        # While disconnected, more events are written.
        for _ in range(2):
            await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)
        last = first[-1]["id"]
        rest = await asyncio.wait_for(_read_sse(http, {**sse, "Last-Event-ID": str(last)}, 3), 10)
    ids = [e["id"] for e in first + rest]
    everything = [e["id"] for e in (await served.http.get("/api/events", headers=READ)).json()]
    assert ids == everything, (ids, everything)  # in order, nothing missed, nothing twice
    assert len(everything) == 5


async def test_a_jobs_own_stream_has_only_its_events_and_ends_with_its_outcome(
    served: Served,
) -> None:
    other = (await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)).json()["id"]
    job_id = (await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)).json()["id"]
    await served.app.start_worker()
    seen: list[tuple[str, str]] = []
    async with listening(served) as http:
        headers = {**READ, "Accept": "text/event-stream"}
        async with http.stream("GET", f"/api/jobs/{job_id}/events", headers=headers) as r:
            kind = ""
            async for line in r.aiter_lines():  # ends when the server ends the stream
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    seen.append((kind, orjson.loads(line[6:])["job_id"]))
    assert seen[0] == ("job.queued", job_id)
    assert seen[-1] == ("job.completed", job_id)
    assert other not in {j for _, j in seen}
