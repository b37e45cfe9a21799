"""HTTP: tasks as endpoints (mode ``http`` or ``both``) and a REST API over the client.

``router(app)`` is an APIRouter to include in your FastAPI app; ``create_app(app)`` is a
FastAPI app of its own (``workhorse serve``). See docs/http.md."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from workhorse.client import HasClient, client_of
from workhorse.http.auth import Auth, AuthCheck, Caller
from workhorse.http.batching import EnqueueBatcher
from workhorse.http.calls import CALL_QUEUE_PREFIX, InlineCalls
from workhorse.http.errors import ApiError, ErrorBody
from workhorse.http.state import Api

__all__ = [
    "CALL_QUEUE_PREFIX",
    "ApiError",
    "AuthCheck",
    "Caller",
    "ErrorBody",
    "create_app",
    "router",
]


def router(app: HasClient, *, insecure: bool = False, auth: AuthCheck | None = None) -> APIRouter:
    """The REST API (under the ``api_prefix`` setting) and one route per http/both task.

    ``auth``: a function of the request returning ``"read"``, ``"write"`` (or True) or a
    false value, consulted when no bearer token is sent. ``insecure``: no auth at all."""
    from workhorse.http.api import api_routes
    from workhorse.http.endpoints import task_routes

    client = client_of(app)
    api = Api(
        client,
        Auth(client, insecure=insecure, check=auth),
        InlineCalls(client),
        client.settings.api_prefix,
        EnqueueBatcher(client),
    )

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await api.calls.close()

    out = APIRouter(lifespan=lifespan)
    # The task endpoints first: the router tries routes in order, and they are the hot path.
    out.include_router(task_routes(api))
    out.include_router(api_routes(api))
    return out


def create_app(
    app: HasClient,
    *,
    insecure: bool = False,
    auth: AuthCheck | None = None,
    routers: Iterable[APIRouter] = (),
    **fastapi: Any,
) -> FastAPI:
    """A FastAPI app serving ``router(app)`` and any further ``routers`` (metrics, flows,
    hooks), closing the app's store when it stops."""
    client = client_of(app)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await client.open()
        try:
            yield
        finally:
            await client.close()

    fastapi.setdefault("title", "workhorse")
    api = FastAPI(lifespan=lifespan, **fastapi)
    api.include_router(router(app, insecure=insecure, auth=auth))
    for extra in routers:
        api.include_router(extra)
    return api
