"""The hooks' REST routes on the durable stores: lag per group, parked events paged with
their errors, replay (only where the hook is subscribed), drop and forget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import close_and_drop
from tests.contract.test_hooks import listening
from tests.http.conftest import READ, WRITE, build
from workhorse import JobEvent, Workhorse
from workhorse.backends import Backend
from workhorse.http import create_app
from workhorse.job import Event

from ..contract.support import eventually


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _serve(app: Workhorse | Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(app))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def parked_app(backend: Backend) -> AsyncIterator[tuple[Workhorse, dict[str, bool]]]:
    """An app whose hook ``save_order`` failed on three events, now parked."""
    app = build(backend)
    broken = {"on": True}

    @app.on("test.order", name="save_order")
    async def save(e: JobEvent) -> None:
        if broken["on"] and (e.job_id or "").startswith("bad"):
            raise ConnectionError("db down")

    await app.open()
    async with listening(app, attempts=1):
        await backend.publish([Event("test.order", f"bad{i}") for i in range(3)])

        async def three() -> bool:
            return len(await app.hooks.parked()) == 3

        await eventually(three, "three parked events")
    yield app, broken
    await close_and_drop(app, backend)


async def test_status_shows_each_group_with_lag_and_parked(
    parked_app: tuple[Workhorse, dict[str, bool]], backend: Backend
) -> None:
    app, _ = parked_app
    await backend.publish([Event("test.order", "late")])  # nobody listens now: one behind
    async with await _serve(app) as http:
        r = await http.get("/api/hooks", headers=READ)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["subscribed"] == ["save_order"]
        [group] = body["groups"]
        assert group["group"] == "app"
        assert group["parked"] == 3
        assert group["behind"] == 1
        assert group["oldest_unread_age"] >= 0
        assert group["listeners"] == 0
        assert group["lost_incidents"] == 0
        assert (await http.get("/api/hooks")).status_code == 401


async def test_parked_events_page_with_their_errors(
    parked_app: tuple[Workhorse, dict[str, bool]],
) -> None:
    app, _ = parked_app
    async with await _serve(app) as http:
        first = (await http.get("/api/hooks/app/parked?limit=2", headers=READ)).json()
        assert [p["event"]["job_id"] for p in first["parked"]] == ["bad0", "bad1"]
        assert first["parked"][0]["error"]["type"] == "ConnectionError"
        assert first["parked"][0]["error"]["message"] == "db down"
        assert "traceback" in first["parked"][0]["error"]  # a token holder sees it
        assert first["parked"][0]["hook"] == "save_order"
        assert first["next_cursor"] == first["parked"][1]["id"]
        r = await http.get(
            "/api/hooks/app/parked",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=READ,
        )
        second = r.json()
        assert [p["event"]["job_id"] for p in second["parked"]] == ["bad2"]
        assert second["next_cursor"] is None
        missing = await http.get("/api/hooks/nogroup/parked", headers=READ)
        assert missing.status_code == 404
        assert "no hook group 'nogroup'" in missing.json()["error"]["message"]


async def test_replay_calls_the_hook_and_a_failure_keeps_it_parked(
    parked_app: tuple[Workhorse, dict[str, bool]],
) -> None:
    app, broken = parked_app
    pid = (await app.hooks.parked())[0].id
    async with await _serve(app) as http:
        assert (await http.post(f"/api/hooks/parked/{pid}/replay", headers=READ)).status_code == 403
        failed = await http.post(f"/api/hooks/parked/{pid}/replay", headers=WRITE)
        assert failed.status_code == 409
        assert failed.json()["error"]["type"] == "ReplayFailed"
        assert "db down" in failed.json()["error"]["message"]
        assert len(await app.hooks.parked()) == 3
        broken["on"] = False
        ok = await http.post(f"/api/hooks/parked/{pid}/replay", headers=WRITE)
        assert ok.status_code == 200, ok.text
        assert pid not in [p.id for p in await app.hooks.parked()]
        gone = await http.post(f"/api/hooks/parked/{pid}/replay", headers=WRITE)
        assert gone.status_code == 404


async def test_a_server_without_the_hook_refuses_replay_but_drops_and_forgets(
    parked_app: tuple[Workhorse, dict[str, bool]],
) -> None:
    app, _ = parked_app
    pid = (await app.hooks.parked())[0].id
    async with await _serve(app.client) as http:  # serves the store, subscribes no hook
        r = await http.post(f"/api/hooks/parked/{pid}/replay", headers=WRITE)
        assert r.status_code == 409
        assert r.json()["error"]["type"] == "NotSubscribed"
        assert "'save_order' is not subscribed" in r.json()["error"]["message"]
        assert len(await app.hooks.parked()) == 3

        assert (await http.delete(f"/api/hooks/parked/{pid}", headers=WRITE)).status_code == 200
        assert len(await app.hooks.parked()) == 2
        assert (await http.delete(f"/api/hooks/parked/{pid}", headers=WRITE)).status_code == 404

        forgot = await http.delete("/api/hooks/app", headers=WRITE)
        assert forgot.status_code == 200
        assert forgot.json()["deleted"] > 0
        assert await app.hooks.groups() == []
        assert (await http.delete("/api/hooks/app", headers=WRITE)).status_code == 404


async def test_an_anonymous_reader_sees_parked_errors_without_traceback(
    parked_app: tuple[Workhorse, dict[str, bool]], backend: Backend
) -> None:
    reads_open = build(backend, api_open_reads=True)  # another server on the same store
    async with await _serve(reads_open) as http:
        r = await http.get("/api/hooks/app/parked")
        assert r.status_code == 200, r.text
        error = r.json()["parked"][0]["error"]
        assert error == {"type": "ConnectionError", "message": "db down"}
        assert (await http.delete("/api/hooks/app")).status_code == 401  # writes still closed
