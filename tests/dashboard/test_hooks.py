"""Hook groups in the dashboard on SQLite, Redis and PostgreSQL: the overview's panel shows
what ``app.hooks.status()`` says, the hooks page shows a parked event with its error and a
redacted payload, replay delivers it, drop and forget change the store, read-only refuses."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.dashboard.conftest import WRITE_TOKEN, Board, asgi, build
from workhorse import JobEvent, Workhorse
from workhorse.backends import backend_from_url
from workhorse.hooks import Listener
from workhorse.job import Event

FAST: dict[str, Any] = {
    "attempts": 1,
    "retry_delay": 0.01,
    "poll_interval": 0.02,
    "lease": 1.5,
    "from_start": True,
}


@asynccontextmanager
async def listening(app: Workhorse, **options: Any) -> AsyncIterator[Listener]:
    listener = app.listener(**{**FAST, **options})
    task = asyncio.create_task(listener.run())
    try:
        yield listener
    finally:
        listener.stop()
        await asyncio.wait_for(task, 10)


async def until(probe: Any, what: str, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if await probe():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def panel(html: str) -> dict[str, dict[str, str]]:
    """The hooks panel's cells by group and field, as text."""
    out: dict[str, dict[str, str]] = {}
    for group, row in re.findall(r'<tr data-group="([^"]+)">(.*?)</tr>', html, re.S):
        cells = re.findall(r'data-field="(\w+)">(.*?)</td>', row, re.S)
        out[group] = {k: re.sub(r"<[^>]+>", "", v).strip() for k, v in cells}
    return out


async def park_two(board: Board) -> tuple[dict[str, bool], list[Any]]:
    """Two completed signups whose ``ledger`` hook fails: both parked in group ``app``;
    group ``audit`` (no listener now) is behind by the events after it stopped."""
    app = board.app
    broken = {"on": True}
    delivered: list[Any] = []

    @app.on("job.completed", task="signup", name="ledger")
    async def ledger(event: JobEvent) -> None:
        if broken["on"]:
            raise ConnectionError("ledger database is down")
        delivered.append(event.data)

    async with listening(app, group="audit", from_start=False) as audit:
        await until(lambda: _holds(audit), "the audit listener to hold its partitions")
    jobs = [await app.enqueue("signup", {"user": u, "password": "hunter2"}) for u in ("ada", "bob")]
    await app.start_worker()
    for h in jobs:
        await app.client.wait(h.id, 10)
    await app.stop_workers()
    return broken, delivered


async def _holds(listener: Listener) -> bool:
    return len(listener.held) >= 1


async def test_the_panel_shows_each_groups_lag_as_status_says(board: Board) -> None:
    await park_two(board)
    app = board.app
    async with listening(app):
        await until(lambda: _parked(app, 2), "two parked events")
        await until(lambda: _caught_up(app), "the app group to read the whole log")
        await board.login()
        html = (await board.http.get("/admin/")).text
        status = {g.group: g for g in await app.hooks.status()}
        shown = panel(html)
        assert set(shown) == set(status) == {"app", "audit"}
        for name, g in status.items():
            row = shown[name]
            assert row["behind"] == str(g.behind)
            assert row["listeners"].split()[0] == str(g.listeners)
            assert row["parked"] == str(g.parked)
            assert row["lost"] == "-"
        assert status["app"].listeners == 1 and status["app"].parked == 2
        assert status["audit"].behind > 0 and status["audit"].listeners == 0
        audit_age = status["audit"].oldest_unread_age
        assert audit_age is not None
        assert abs(float(shown["audit"]["age"].removesuffix(" s")) - audit_age) <= 2
        assert re.search(r'data-group="audit">((?!</tr>).)*\(none\).*?</tr>', html, re.S)
        fragment = (await board.http.get("/admin/parts/hooks")).text
        assert panel(fragment) == shown
    nav = (await board.http.get("/admin/hooks")).text
    assert '<a href="/admin/hooks">Hooks</a>' in nav


async def _count(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def _parked(app: Workhorse, n: int) -> bool:
    return len(await app.hooks.parked()) >= n


async def _caught_up(app: Workhorse) -> bool:
    return (await app.hooks.lag("app")).behind == 0


async def test_a_parked_event_shows_its_error_and_replay_delivers_it(board: Board) -> None:
    broken, delivered = await park_two(board)
    app = board.app
    async with listening(app):
        await until(lambda: _parked(app, 2), "two parked events")
    first, second = await app.hooks.parked()
    await board.login()
    page = (await board.http.get("/admin/hooks")).text
    assert first.id in page and second.id in page
    assert "ConnectionError" in page and "ledger database is down" in page
    assert "raise ConnectionError" in page  # the traceback
    assert "ada" in page and "hunter2" not in page and "***" in page  # the redacted payload
    assert f'name="parked" value="{first.id}"' in page

    csrf = await board.csrf("/admin/hooks")
    r = await board.http.post("/admin/hooks/app/replay", data={"csrf": csrf, "parked": first.id})
    assert "replay%20failed" in r.headers["location"]  # still broken: it stays parked
    again = await app.hooks.parked()
    assert [p.id for p in again] == [first.id, second.id] and again[0].attempts == 2

    broken["on"] = False
    r = await board.http.post("/admin/hooks/app/replay", data={"csrf": csrf, "parked": first.id})
    assert r.status_code == 303 and "replayed" in r.headers["location"]
    assert delivered == [first.event.data]
    r = await board.http.post("/admin/hooks/app/drop", data={"csrf": csrf, "parked": second.id})
    assert "dropped" in r.headers["location"]
    assert await app.hooks.parked() == [] and delivered == [first.event.data]
    after = await board.http.get(r.headers["location"])
    assert "dropped without a call" in after.text and "None: every event" in after.text

    r = await board.http.post("/admin/hooks/audit/forget", data={"csrf": csrf})
    assert "forgotten" in r.headers["location"]
    assert await app.hooks.groups() == ["app"]


async def test_replay_says_so_when_the_serving_app_does_not_subscribe_the_hook(
    board: Board,
) -> None:
    await park_two(board)
    async with listening(board.app):
        await until(lambda: _parked(board.app, 2), "two parked events")
    [first, _] = await board.app.hooks.parked()
    transport = httpx.ASGITransport(app=asgi(board.app.client))  # a client: no hooks
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        other = Board(board.app, http)
        await other.login()
        page = (await http.get("/admin/hooks")).text
        assert "does not subscribe" in page and "workhorse hooks replay APP" in page
        assert '/admin/hooks/app/replay"' not in page
        csrf = await other.csrf("/admin/hooks")
        r = await http.post("/admin/hooks/app/replay", data={"csrf": csrf, "parked": first.id})
        assert "not%20replayed" in r.headers["location"] and "subscribed" in r.headers["location"]
    assert len(await board.app.hooks.parked()) == 2


async def test_read_only_shows_parked_events_and_refuses_their_actions(board: Board) -> None:
    await park_two(board)
    async with listening(board.app):
        await until(lambda: _parked(board.app, 2), "two parked events")
    [first, _] = await board.app.hooks.parked()
    transport = httpx.ASGITransport(app=asgi(board.app, read_only=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        ro = Board(board.app, http)
        await ro.login(WRITE_TOKEN)
        page = (await http.get("/admin/hooks")).text
        assert first.id in page and "ledger database is down" in page
        assert 'name="csrf"' not in page and "/replay" not in page and "/forget" not in page
        for action in ("replay", "drop"):
            r = await http.post(
                f"/admin/hooks/app/{action}", data={"csrf": "x", "parked": first.id}
            )
            assert r.status_code == 403, action
        r = await http.post("/admin/hooks/audit/forget", data={"csrf": "x"})
        assert r.status_code == 403
    assert len(await board.app.hooks.parked()) == 2
    assert await board.app.hooks.groups() == ["app", "audit"]


async def test_a_group_that_lost_events_is_marked_lost(store_url: str, backend: Any) -> None:
    """The log keeps about 100 events here; 3000 published while no listener runs go past
    the group's hold on it (10 times that), so the next listener records a loss."""
    url = f"{store_url}{'&' if '?' in store_url else '?'}max_events=100"
    app = build(backend_from_url(url))
    await app.open()
    try:
        got: list[str | None] = []
        app.on("test.trim", lambda e: got.append(e.job_id), name="trim")
        async with listening(app):
            await app.client.backend.publish([Event("test.trim", f"a{i}") for i in range(10)])
            await until(lambda: _count(got, 10), "the first events")
        for start in range(0, 3000, 500):
            await app.client.backend.publish(
                [Event("test.trim", f"b{start + i}") for i in range(500)]
            )
        sweep = getattr(app.client.backend, "sweep", None)
        if sweep is not None:
            await sweep()  # PostgreSQL bounds its log in a periodic sweep
        async with listening(app):
            # Some delivered first: on PostgreSQL a transaction in flight anywhere on the
            # server holds every reader back a moment, the lag's too (it reads 0 meanwhile).
            await until(lambda: _count(got, 11), "the retained tail", timeout=20)
            await until(lambda: _caught_up(app), "the listener to catch up", timeout=20)
        status = await app.hooks.lag()
        assert status.lost_incidents == 1
        transport = httpx.ASGITransport(app=asgi(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            b = Board(app, http)
            await b.login()
            lost = panel((await http.get("/admin/")).text)["app"]["lost"]
        assert lost.startswith("LOST ")
        if status.lost_events is None:  # Redis, PostgreSQL: their ids count nothing
            assert "an unknown number of events" in lost
        else:
            assert f"up to {status.lost_events} events (1 time(s))" in lost
    finally:
        await app.close()
