"""An app with one task per mode and auth kind, served through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import BaseModel

from tests.conftest import close_and_drop
from workhorse import JobContext, Workhorse
from workhorse.backends import Backend
from workhorse.http import create_app

WRITE = {"Authorization": "Bearer write-token-1"}
WRITE_OLD = {"Authorization": "Bearer write-token-0"}  # a second write token: rotation
READ = {"Authorization": "Bearer read-token-1"}
SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy1vbmx5"  # base64 of "secret-for-tests-only"


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres", "redis-cluster"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The REST routes and the calls run on every backend."""
    return str(request.param)


class Email(BaseModel):
    to: str
    subject: str = "hello"


def build(backend: Backend | None = None, **settings: object) -> Workhorse:
    """The seed's send-email task in all three modes, and a few to test errors and auth."""
    settings.setdefault("api_tokens", "write:write-token-1,write:write-token-0,read:read-token-1")
    settings.setdefault("webhook_secrets", SECRET)
    # No backend given: a private memory store (never the default SQLite file in the cwd).
    url = "memory://" if backend is None else None
    app = Workhorse(url, backend=backend, poll_interval=0.05, **settings)  # type: ignore[arg-type]

    @app.task(mode="http", http={"path": "/api/send-email", "method": "POST", "auth": True})
    async def send_email(data: Email, ctx: JobContext) -> dict[str, object]:
        ctx.log("sending", to=data.to)
        await ctx.progress(50)
        return {"sent": True, "to": data.to}

    @app.task(mode="both")
    async def send_email_both(data: Email) -> dict[str, object]:
        return {"sent": True, "to": data.to}

    @app.task
    async def send_email_queued(data: Email) -> dict[str, object]:
        return {"sent": True, "to": data.to}

    @app.task(mode="both", http={"auth": False})
    async def boom(data: dict[str, object]) -> dict[str, object]:
        raise ValueError("the mail server said no")

    @app.task(mode="http", timeout=0.2, http={"auth": "write"})
    async def slow(data: dict[str, object]) -> dict[str, object]:
        await asyncio.sleep(5)
        return {}

    @app.task(mode="http", http={"path": "/hooks/payment", "auth": "webhook"})
    async def payment(data: dict[str, object]) -> dict[str, object]:
        return {"got": data}

    @app.task(mode="http", http={"path": "/hooks/broken", "auth": "webhook"})
    async def broken_hook(data: dict[str, object]) -> dict[str, object]:
        raise ConnectionError("the ledger is down")

    @app.task(mode="http", http={"path": "/api/lookup", "method": "GET", "auth": "read"})
    def lookup(data: dict[str, str]) -> dict[str, str]:
        return {"echo": data.get("q", "")}

    @app.task(singleton=True)
    async def one_at_a_time(data: dict[str, object] | None = None) -> dict[str, object]:
        return {}

    @app.task
    async def noop(data: dict[str, object] | None = None) -> dict[str, object]:
        return {}

    return app


@dataclass
class Served:
    app: Workhorse
    http: httpx.AsyncClient


@pytest.fixture
async def served(backend: Backend) -> AsyncIterator[Served]:
    app = build(backend)
    api = create_app(app)
    await app.open()
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Served(app, http)
    await close_and_drop(app, backend)
