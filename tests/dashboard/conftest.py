"""A small app and its dashboard served through httpx's ASGI transport, on each durable
backend; helpers to log in and to read a page's CSRF token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import close_and_drop
from workhorse import JobContext, Workhorse
from workhorse.backends import Backend
from workhorse.dashboard import router

WRITE_TOKEN = "write-token-1"
READ_TOKEN = "read-token-1"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Each page renders on each durable backend."""
    return str(request.param)


def build(backend: Backend | None = None, **settings: Any) -> Workhorse:
    settings.setdefault("api_tokens", f"write:{WRITE_TOKEN},read:{READ_TOKEN}")
    url = "memory://" if backend is None else None
    app = Workhorse(url, backend=backend, poll_interval=0.05, **settings)

    @app.task
    async def signup(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        ctx.log("signing up", user=data.get("user"), api_key="log-secret-123")
        return {"ok": True, "token": "result-secret-xyz"}

    @app.task(retries=0)
    async def boom(data: dict[str, Any]) -> None:
        raise ValueError("the mail server said no")

    @app.task
    async def crawl(data: dict[str, Any], ctx: JobContext) -> None:
        for step in range(1, 11):
            await ctx.progress(step * 10)
            await asyncio.sleep(float(data.get("pause", 0.3)))

    # A flow like the demo's: receive, then charge and reserve in parallel, then ship
    # (a join); and one whose second step waits for a signal.
    app.flows.define("order", cleanup="never")  # its state values stay for the page

    @app.task(flow="order", entry=True)
    async def receive(order: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        assert ctx.state is not None
        await ctx.state.set("card", {"number": "4242", "card_secret": "state-secret-9"})
        return {"order": order.get("id"), "total": order.get("total", 1)}

    @app.task(flow="order", subscribes=["step:receive"])
    async def charge(received: dict[str, Any]) -> dict[str, Any]:
        return {"charged": received["total"]}

    @app.task(flow="order", subscribes=["step:receive"])
    async def reserve(received: dict[str, Any]) -> dict[str, Any]:
        return {"reserved": received["order"]}

    @app.task(flow="order", subscribes=["step:charge", "step:reserve"])
    async def ship(inputs: dict[str, Any]) -> str:
        return "shipped"

    @app.task(flow="approval", entry=True)
    async def ask(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @app.task(flow="approval", subscribes=["step:ask"], wait={"signal": "approved"})
    async def approve(data: dict[str, Any]) -> str:
        return "approved"

    return app


@dataclass
class Board:
    app: Workhorse
    http: httpx.AsyncClient

    async def login(self, token: str = WRITE_TOKEN) -> None:
        r = await self.http.post("/admin/login", data={"token": token, "next": "/admin/"})
        assert r.status_code == 303, r.text

    async def csrf(self, path: str = "/admin/") -> str:
        page = await self.http.get(path)
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert found, f"no action form on {path}"
        return found.group(1)


def asgi(app: Workhorse, **options: Any) -> FastAPI:
    api = FastAPI()
    api.include_router(router(app, **options))
    return api


@pytest.fixture
async def board(backend: Backend) -> AsyncIterator[Board]:
    app = build(backend)
    await app.open()
    transport = httpx.ASGITransport(app=asgi(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Board(app, http)
    await close_and_drop(app, backend)
