"""Live updates on each durable store: a page's change notices start at the event log's
cursor taken before the page read what it shows, so a change made between its render
and its stream's opening still reaches it; the shared follower keeps its newest notices
for a stream that is behind it, and says so when it no longer has them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import close_and_drop
from tests.dashboard.conftest import Board, asgi, build
from tests.dashboard.test_flows import nodes
from workhorse.backends import Backend
from workhorse.dashboard.live import Tail, stream
from workhorse.dashboard.session import COOKIE


@pytest.fixture
async def site(backend: Backend) -> AsyncIterator[tuple[Board, FastAPI]]:
    """The dashboard, and its ASGI app for the event stream (httpx's transport waits for
    a whole body; a stream has no end)."""
    app = build(backend)
    await app.open()
    api = asgi(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://test"
    ) as http:
        yield Board(app, http), api
    await close_and_drop(app, backend)


async def first_notice(api: FastAPI, path: str, query: str, cookie: str) -> bytes:
    """The first change notice of a GET of the event stream, read as a browser reads it."""
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    async def receive() -> dict[str, str]:
        await asyncio.Event().wait()  # the browser stays
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            assert isinstance(body, bytes)
            await chunks.put(body)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"test"), (b"cookie", f"{COOKIE}={cookie}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    served = asyncio.create_task(api(scope, receive, send))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(10):
            while b"data:" not in (chunk := await chunks.get()):
                pass
            return chunk
    finally:
        served.cancel()


async def first_data(notices: AsyncIterator[bytes]) -> bytes:
    async with asyncio.timeout(10):
        async for notice in notices:
            if b"data:" in notice:
                return notice
    raise AssertionError("the stream ended")


async def events_after(board: Board, after: int, at_least: int) -> None:
    """Until the log shows ``at_least`` events after ``after`` (stores publish an event to
    readers a moment after the write: Redis once its millisecond passed)."""
    for _ in range(200):
        if len(await board.app.client.events(after, 100)) >= at_least:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} events after {after}")


async def test_a_change_between_a_pages_render_and_its_stream_reaches_the_page(
    site: tuple[Board, FastAPI],
) -> None:
    """The CI flake of the browser test: the run page rendered with its entry step queued,
    the step ran and the next one began to wait before the page's stream opened; a stream
    from then on never heard of it, and the page showed the wait only on a reload."""
    board, api = site
    await board.login()
    csrf = await board.csrf("/admin/flows")
    r = await board.http.post("/admin/flows/approval/start", data={"csrf": csrf, "data": "{}"})
    run_id = r.headers["location"].split("/runs/")[1].split("?")[0]
    page = (await board.http.get(f"/admin/flows/runs/{run_id}")).text
    assert nodes(page) == {"ask": "queued", "approve": "pending"}  # no worker yet
    found = re.search(r'data-after="(\d+)"', page)
    assert found, "the page does not carry the event log's cursor for its stream"
    await board.app.start_worker()
    for _ in range(200):  # the page is still loading its scripts: the run moves on
        if (await board.app.flows.get(run_id)).waits:
            break
        await asyncio.sleep(0.02)
    cookie = board.http.cookies.get(COOKIE)
    assert cookie is not None
    notice = await first_notice(api, "/admin/events", f"after={found.group(1)}", cookie)
    assert b"id: " in notice  # the page's reload then shows the wait
    part = (await board.http.get(f"/admin/parts/flows/runs/{run_id}")).text
    assert nodes(part)["approve"] == "waiting"


async def test_a_stream_behind_the_followers_last_read_gets_its_notice(board: Board) -> None:
    """Another page's stream advanced the shared follower twice (a read with the change,
    then one without) before this one read it: the notice is still there for it."""
    tail = Tail(board.app.client, 0.01)
    start = await tail.advance()
    job = await board.app.enqueue("signup", {})
    await events_after(board, start, 1)
    for _ in range(2):
        await asyncio.sleep(0.02)
        await tail.advance()
    assert job.id.encode() in await first_data(stream(tail, start))


async def test_a_stream_from_before_the_followers_start_gets_a_catch_up_notice(
    board: Board,
) -> None:
    """A page rendered by another server process (or before a restart) whose change came
    before this process's follower started: one notice, and the page reloads."""
    mark = await board.app.client.events_head()
    await board.app.enqueue("signup", {})
    await events_after(board, mark, 1)
    tail = Tail(board.app.client, 0.01)  # starts at the log's end: after the change
    assert b'"catch-up"' in await first_data(stream(tail, mark))


async def test_the_follower_keeps_its_newest_notices(board: Board) -> None:
    tail = Tail(board.app.client, 0, keep=2)
    start = await tail.advance()
    jobs = [await board.app.enqueue("signup", {}) for _ in range(3)]
    await events_after(board, start, 3)
    cursor = await tail.advance()
    notices, seen = tail.since(start)  # the first job's notice is gone: catch up
    assert seen == cursor and len(notices) == 1 and b'"catch-up"' in notices[0]
    notices, seen = tail.since(tail.floor)
    assert seen == cursor
    assert [j.id.encode() in n for j, n in zip(jobs[1:], notices, strict=True)] == [True, True]
    assert tail.since(cursor) == ([], cursor)  # nothing new
