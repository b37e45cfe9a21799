"""``GET /api/triggers``: each flow trigger with the steps that fire it and those that run
on it, from the app's graphs, behind the read gate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import _drop
from tests.http.conftest import READ, build
from workhorse.backends import Backend
from workhorse.http import create_app


@pytest.fixture
async def http(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app = build(backend)

    @app.task(name="signup", flow="onboard", entry=True, emits=["user.created"])
    async def signup(data: Any) -> Any:
        return data

    @app.task(name="welcome", flow="onboard", subscribes=["user.created"])
    async def welcome(data: Any) -> Any:
        return data

    @app.task(name="crm", flow="onboard", subscribes=["user.created", "step:welcome"])
    async def crm(data: Any) -> Any:
        return data

    @app.task(name="invite", flow="referral", entry=True, emits=["user.created"])
    async def invite(data: Any) -> Any:
        return data

    await app.open()
    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await _drop(backend)
    await app.close()


async def test_triggers_list_their_publishers_and_subscribers(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/triggers", headers=READ)
    assert r.status_code == 200, r.text
    found = {t["name"]: {u["flow"]: u for u in t["flows"]} for t in r.json()["triggers"]}
    assert sorted(found) == ["step:welcome", "user.created"]
    created = found["user.created"]
    assert created["onboard"]["publishers"] == ["signup"]
    assert sorted(created["onboard"]["subscribers"]) == ["crm", "welcome"]
    # Emitted with nobody subscribed in that flow: listed, with no subscriber.
    assert created["referral"] == {"flow": "referral", "publishers": ["invite"], "subscribers": []}
    assert found["step:welcome"]["onboard"]["publishers"] == ["welcome"]
    assert found["step:welcome"]["onboard"]["subscribers"] == ["crm"]


async def test_triggers_need_a_token(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/triggers")).status_code == 401
