"""HTTP: tasks as endpoints (mode ``http`` or ``both``) and a REST API over the client.

``router(app)`` is an APIRouter to include in your FastAPI app; ``create_app(app)`` is a
FastAPI app of its own (``workhorse serve``). See docs/http.md."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match

from workhorse.client import HasClient, client_of
from workhorse.errors import ConfigError
from workhorse.flows import Flows
from workhorse.hooks import Hooks, HookSet
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
        _hooks_of(app),
        _flows_of(app),
    )

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await api.calls.close()

    out = APIRouter(lifespan=lifespan)
    tasks, rest = task_routes(api), api_routes(api)
    _check_paths(tasks, rest)
    # The task endpoints first: the router tries routes in order, and they are the hot path.
    out.include_router(tasks)
    out.include_router(rest)
    return out


def _hooks_of(app: HasClient) -> Hooks:
    """The app's hooks (``app.hooks``); a bare client subscribes none, so replay refuses."""
    hooks = getattr(app, "hooks", None)
    return hooks if isinstance(hooks, Hooks) else Hooks(client_of(app), HookSet())


def _flows_of(app: HasClient) -> Flows:
    """The app's flows (``app.flows``); a bare client defines none."""
    flows = getattr(app, "flows", None)
    return flows if isinstance(flows, Flows) else Flows(client_of(app))


def _check_paths(tasks: APIRouter, rest: APIRouter) -> None:
    """A task endpoint must not hide a REST route (it is matched first)."""
    for t in tasks.routes:
        if not isinstance(t, APIRoute):
            continue
        for method in t.methods or ():
            scope = {"type": "http", "path": t.path, "method": method, "root_path": ""}
            for r in rest.routes:
                if isinstance(r, APIRoute) and r.matches(scope)[0] is Match.FULL:
                    raise ConfigError(
                        f"task endpoint {method} {t.path} is also the REST API's route "
                        f"{r.path}; give the task another http path"
                    )


def create_app(
    app: HasClient,
    *,
    insecure: bool = False,
    auth: AuthCheck | None = None,
    routers: Iterable[APIRouter] = (),
    **fastapi: Any,
) -> FastAPI:
    """A FastAPI app serving ``router(app)`` and any further ``routers`` (metrics, the
    dashboard), closing the app's store when it stops."""
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
