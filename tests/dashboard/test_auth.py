"""Who may see and act: the login, the session cookie, CSRF, read tokens and read-only
mode (every action route enumerated), on a memory store; and logging out, which ends the
session in the store for every server process (on each durable store)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.dashboard.conftest import READ_TOKEN, WRITE_TOKEN, Board, asgi, build
from workhorse.backends import Backend
from workhorse.dashboard.live import Tail, stream
from workhorse.dashboard.session import COOKIE, Sessions

ACTIONS = [
    "/admin/jobs/{job}/retry",
    "/admin/jobs/{job}/edit",
    "/admin/jobs/{job}/cancel",
    "/admin/queues/default/pause",
    "/admin/queues/default/resume",
    "/admin/queues/default/retry-failed",
    "/admin/queues/default/cancel-queued",
    "/admin/queues/default/purge",
    "/admin/schedules/nightly/run",
    "/admin/schedules/nightly/remove",
    "/admin/schedules",
    "/admin/hooks/app/replay",
    "/admin/hooks/app/drop",
    "/admin/hooks/app/forget",
    "/admin/flows/order/start",
    "/admin/flows/runs/0123456789abcdef/cancel",
    "/admin/flows/runs/0123456789abcdef/restart",
    "/admin/flows/runs/0123456789abcdef/resume",
    "/admin/workers/host-1-abcd/pause",
    "/admin/workers/host-1-abcd/resume",
]


async def open_board(**options: Any) -> AsyncIterator[Board]:
    settings = options.pop("settings", {})
    app = build(**settings)
    await app.open()
    transport = httpx.ASGITransport(app=asgi(app, **options))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Board(app, http)
    await app.close()


@pytest.fixture
async def mem() -> AsyncIterator[Board]:
    async for b in open_board():
        yield b


@pytest.fixture
async def read_only() -> AsyncIterator[Board]:
    async for b in open_board(settings={"dashboard_read_only": True}):
        yield b


async def test_an_unauthenticated_visit_lands_on_the_login_and_comes_back(mem: Board) -> None:
    for path in ["/admin/", "/admin/queues/default?state=failed", "/admin/schedules"]:
        r = await mem.http.get(path)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/admin/login?next=")
    login = await mem.http.get("/admin/login?next=/admin/schedules")
    assert 'type="password"' in login.text and 'value="/admin/schedules"' in login.text
    r = await mem.http.post("/admin/login", data={"token": WRITE_TOKEN, "next": "/admin/schedules"})
    assert (r.status_code, r.headers["location"]) == (303, "/admin/schedules")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
    assert (await mem.http.get("/admin/schedules")).status_code == 200


async def test_a_wrong_token_a_forged_cookie_and_an_outside_next_are_refused(mem: Board) -> None:
    r = await mem.http.post("/admin/login", data={"token": "not-a-token"})
    assert r.status_code == 401 and "not valid" in r.text
    assert "not-a-token" not in r.text  # the token is never echoed back
    mem.http.cookies.set("workhorse_session", "eyJzIjoid3JpdGUifQ.forged", path="/admin")
    assert (await mem.http.get("/admin/")).status_code == 303
    r = await mem.http.post(
        "/admin/login", data={"token": WRITE_TOKEN, "next": "https://evil.example/"}
    )
    assert r.headers["location"] == "/admin/"  # no open redirect


async def test_every_action_needs_the_sessions_csrf_token(mem: Board) -> None:
    job = await mem.app.enqueue("signup", {"user": "ada"})
    await mem.login()
    for path in ACTIONS:
        url = path.format(job=job.id)
        r = await mem.http.post(url, data={"name": "x", "task": "signup", "cron": "* * * * *"})
        assert r.status_code == 403, url
        assert "CSRF" in r.text
        r = await mem.http.post(url, data={"csrf": "0" * 32})
        assert r.status_code == 403, url
    assert not await mem.app.client.is_paused("default")
    other = await mem.csrf("/admin/queues/default")
    await mem.login()  # a new session: the old page's token no longer works
    r = await mem.http.post("/admin/queues/default/pause", data={"csrf": other})
    assert r.status_code == 403


async def test_no_session_no_action(mem: Board) -> None:
    for path in ACTIONS:
        r = await mem.http.post(path.format(job="ab"), data={"csrf": "x"})
        assert r.status_code == 401, path


async def check_no_action(board: Board, token: str) -> None:
    job = await board.app.enqueue("boom", {})
    await board.app.client.add_schedule("nightly", "signup", "0 3 * * *", {})
    run = await board.app.flows.start("order", {"id": 1})
    await board.login(token)
    pages = ["/admin/", "/admin/queues/default", f"/admin/jobs/{job.id}", "/admin/schedules"]
    for page in [*pages, "/admin/hooks", "/admin/flows", f"/admin/flows/runs/{run.id}"]:
        html = (await board.http.get(page)).text
        assert 'name="csrf"' not in html, page
        assert not re.search(r"<form method=\"post\" action=\"/admin/(?!logout)", html), page
    for path in ACTIONS:
        r = await board.http.post(path.format(job=job.id), data={"csrf": "forged"})
        assert r.status_code == 403, path
    assert [s.name for s in await board.app.client.schedules()] == ["nightly"]
    assert not await board.app.client.is_paused("default")
    assert [r.state for r in await board.app.flows.list()] == ["running"]  # not cancelled
    r = await board.http.post(f"/admin/flows/runs/{run.id}/cancel", data={"csrf": "forged"})
    assert r.status_code == 403


async def test_a_read_token_shows_no_action_and_refuses_forged_writes(mem: Board) -> None:
    await check_no_action(mem, READ_TOKEN)


async def test_read_only_mode_refuses_even_a_write_token(read_only: Board) -> None:
    await check_no_action(read_only, WRITE_TOKEN)


async def test_without_tokens_nobody_logs_in_and_the_page_says_how_to_fix_it() -> None:
    async for b in open_board(settings={"api_tokens": None}):
        page = await b.http.get("/admin/login")
        assert "WORKHORSE_API_TOKENS" in page.text
        r = await b.http.post("/admin/login", data={"token": "anything-at-all"})
        assert r.status_code == 401


async def test_insecure_mode_opens_pages_and_still_wants_csrf() -> None:
    async for b in open_board(insecure=True):
        assert (await b.http.get("/admin/")).status_code == 200
        r = await b.http.post("/admin/queues/default/pause", data={})
        assert r.status_code == 403
        csrf = await b.csrf("/admin/queues/default")
        r = await b.http.post("/admin/queues/default/pause", data={"csrf": csrf})
        assert r.status_code == 303 and await b.app.client.is_paused("default")


async def test_static_files_are_served_and_nothing_else(mem: Board) -> None:
    r = await mem.http.get("/admin/static/htmx.min.js")
    assert r.status_code == 200 and "htmx" in r.text
    assert (await mem.http.get("/admin/static/uPlot.iife.min.js")).status_code == 200
    assert (await mem.http.get("/admin/static/..%2F__init__.py")).status_code == 404
    assert (await mem.http.get("/admin/static/htmx.LICENSE")).status_code == 404


async def test_a_post_from_another_site_is_refused_even_with_a_valid_session(mem: Board) -> None:
    await mem.login()
    csrf = await mem.csrf("/admin/queues/default")
    evil = {"Origin": "https://evil.example"}
    r = await mem.http.post("/admin/queues/default/pause", data={"csrf": csrf}, headers=evil)
    assert r.status_code == 403 and "cross-site" in r.text
    r = await mem.http.post("/admin/login", data={"token": WRITE_TOKEN}, headers=evil)
    assert r.status_code == 403
    assert not await mem.app.client.is_paused("default")
    ours = {"Origin": "http://test"}
    r = await mem.http.post("/admin/queues/default/pause", data={"csrf": csrf}, headers=ours)
    assert r.status_code == 303 and await mem.app.client.is_paused("default")


async def test_logging_out_ends_the_session_for_every_copy_of_its_cookie(
    board: Board, backend_factory: Callable[[], Backend]
) -> None:
    """A copied (stolen) cookie works until its owner logs out, then nowhere: not on this
    server process, not on another one serving the same store."""
    await board.login()
    stolen = {"Cookie": f"{COOKIE}={board.http.cookies[COOKIE]}"}
    csrf = await board.csrf("/admin/queues/default")
    other = build(backend_factory())  # another server process on the same store
    await other.open()
    try:
        transport = httpx.ASGITransport(app=asgi(other))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as elsewhere:
            assert (await elsewhere.get("/admin/", headers=stolen)).status_code == 200
            assert (await board.http.post("/admin/logout")).status_code == 303
            for http in (board.http, elsewhere):
                r = await http.get("/admin/", headers=stolen)
                assert r.status_code == 303 and "/admin/login" in r.headers["location"]
                pause = "/admin/queues/default/pause"
                r = await http.post(pause, data={"csrf": csrf}, headers=stolen)
                assert r.status_code == 401
        assert not await board.app.client.is_paused("default")
    finally:
        await other.close()
    await board.login()  # a new login works as before
    assert (await board.http.get("/admin/")).status_code == 200


async def test_a_change_stream_ends_once_its_session_logs_out(board: Board) -> None:
    sessions = Sessions(
        f"write:{WRITE_TOKEN}", board.app.client, insecure=False, read_only=False, lifetime=60
    )
    cookie = await sessions.login(WRITE_TOKEN)

    async def alive() -> bool:
        return await sessions.check(cookie) is not None

    async def enqueue_soon() -> str:
        await asyncio.sleep(0.3)  # once the stream has found the log's end
        return (await board.app.enqueue("signup", {})).id

    notices = stream(Tail(board.app.client, 0.05), None, alive, recheck=0.1)
    async with asyncio.timeout(10):
        assert await anext(notices) == b"retry: 2000\n\n"
        job = asyncio.create_task(enqueue_soon())
        notice = await anext(notices)
        while b"data:" not in notice:  # idle comments
            notice = await anext(notices)
        assert (await job).encode() in notice  # live while the session lasts
        await sessions.logout(cookie)
        assert [n async for n in notices if b"data:" in n] == []  # then it ends
