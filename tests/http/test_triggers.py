"""``GET /api/triggers``: each flow trigger with the steps that fire it, those that run on
it and the entries it starts, from the app's graphs, behind the read gate; and
``POST /api/triggers/{name}``, which starts a run of each flow listening, behind the write
gate, once per Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import close_and_drop
from tests.http.conftest import READ, WRITE, build
from workhorse import Workhorse
from workhorse.backends import Backend
from workhorse.http import create_app


@pytest.fixture
async def served(backend: Backend) -> AsyncIterator[tuple[Workhorse, httpx.AsyncClient]]:
    app = build(backend)

    @app.task(
        name="signup", flow="onboard", entry=True, emits=["user.created"], triggers=["user.signup"]
    )
    async def signup(data: Any) -> Any:
        return data

    @app.task(name="welcome", flow="onboard", subscribes=["user.created"])
    async def welcome(data: Any) -> Any:
        return data

    @app.task(name="crm", flow="onboard", subscribes=["user.created", "step:welcome"])
    async def crm(data: Any) -> Any:
        return data

    @app.task(
        name="invite", flow="referral", entry=True, emits=["user.created"], triggers=["user.signup"]
    )
    async def invite(data: Any) -> Any:
        return data

    await app.open()
    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield app, client
    await close_and_drop(app, backend)


@pytest.fixture
def http(served: tuple[Workhorse, httpx.AsyncClient]) -> httpx.AsyncClient:
    return served[1]


async def test_triggers_list_their_publishers_and_subscribers(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/triggers", headers=READ)
    assert r.status_code == 200, r.text
    found = {t["name"]: {u["flow"]: u for u in t["flows"]} for t in r.json()["triggers"]}
    assert sorted(found) == ["step:welcome", "user.created", "user.signup"]
    # An external trigger: nothing in the flow fires it, it starts the entries listing it.
    assert found["user.signup"]["onboard"] == {
        "flow": "onboard",
        "publishers": [],
        "subscribers": [],
        "starts": ["signup"],
    }
    assert found["user.signup"]["referral"]["starts"] == ["invite"]
    created = found["user.created"]
    assert created["onboard"]["publishers"] == ["signup"]
    assert created["onboard"]["starts"] == []
    assert sorted(created["onboard"]["subscribers"]) == ["crm", "welcome"]
    # Emitted with nobody subscribed in that flow: listed, with no subscriber.
    assert created["referral"] == {
        "flow": "referral",
        "publishers": ["invite"],
        "subscribers": [],
        "starts": [],
    }
    assert found["step:welcome"]["onboard"]["publishers"] == ["welcome"]
    assert found["step:welcome"]["onboard"]["subscribers"] == ["crm"]


async def test_triggers_need_a_token(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/triggers")).status_code == 401


async def test_firing_a_trigger_starts_each_listening_flow_once(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    r = await http.post("/api/triggers/user.signup", json={"user": "ada"}, headers=WRITE)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["trigger"] == "user.signup" and body["message"] is None
    assert sorted(x["flow"] for x in body["runs"]) == ["onboard", "referral"]
    for x in body["runs"]:
        assert x["location"] == f"/api/runs/{x['id']}" and x["state"] == "running"
        run = await http.get(x["location"], headers=READ)
        assert run.status_code == 200 and run.json()["input"] == {"user": "ada"}
    assert len(await app.flows.list("onboard")) == len(await app.flows.list("referral")) == 1


async def test_an_idempotency_key_fires_a_trigger_once(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    headers = {**WRITE, "Idempotency-Key": "k-" + uuid.uuid4().hex}
    sent = [
        http.post("/api/triggers/user.signup", json={"user": "ada"}, headers=headers)
        for _ in range(5)
    ]
    answers = await asyncio.gather(*sent)
    assert {r.status_code for r in answers} == {202}
    assert len({tuple(sorted(x["id"] for x in r.json()["runs"])) for r in answers}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 4
    other = await http.post("/api/triggers/user.signup", json={"user": "bob"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["type"] == "IdempotencyKeyReused"
    assert len(await app.flows.list("onboard")) == len(await app.flows.list("referral")) == 1
    bad = {**WRITE, "Idempotency-Key": "x" * 256}
    assert (await http.post("/api/triggers/user.signup", json={}, headers=bad)).status_code == 400


async def test_a_trigger_no_flow_listens_to_starts_nothing_and_says_so(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    # user.created fires inside a run only: no entry lists it.
    for name in ("user.created", "nobody.listens"):
        r = await http.post(f"/api/triggers/{name}", json={"user": "ada"}, headers=WRITE)
        assert r.status_code == 202, r.text
        assert r.json()["runs"] == [] and "no flow listens" in r.json()["message"]
        assert "Location" not in r.headers
    assert await app.flows.list() == []


async def test_firing_a_trigger_needs_a_write_token(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    assert (await http.post("/api/triggers/user.signup", json={})).status_code == 401
    r = await http.post("/api/triggers/user.signup", json={}, headers=READ)
    assert r.status_code == 403
    assert await app.flows.list() == []


async def test_the_flow_graph_shows_an_entrys_triggers(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/flows/onboard", headers=READ)
    steps = {s["name"]: s for s in r.json()["steps"]}
    assert steps["signup"]["triggers"] == ["user.signup"]
    assert steps["welcome"]["triggers"] == []


async def test_a_key_replayed_after_its_runs_were_cleared_starts_nothing(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    headers = {**WRITE, "Idempotency-Key": "k-" + uuid.uuid4().hex}
    first = await http.post("/api/triggers/user.signup", json={"user": "ada"}, headers=headers)
    for run in first.json()["runs"]:
        await app.flows.cancel(run["id"])
    assert await app.flows.clear() == 2
    again = await http.post("/api/triggers/user.signup", json={"user": "ada"}, headers=headers)
    assert again.status_code == 202, again.text
    assert {x["state"] for x in again.json()["runs"]} == {"cleared"}
    assert await app.flows.list() == []
