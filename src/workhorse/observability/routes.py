"""``GET /metrics`` and ``GET /health`` as a FastAPI router, for ``workhorse serve`` or a
user's own app: ``app.include_router(router(workhorse_app))``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workhorse.client import client_of
from workhorse.observability.collector import store_metrics
from workhorse.observability.health import check

if TYPE_CHECKING:
    from fastapi import APIRouter

    from workhorse.client import Client, HasClient

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def router(app: Client | HasClient) -> APIRouter:
    from fastapi import APIRouter, Response
    from fastapi.responses import JSONResponse

    client = client_of(app)
    r = APIRouter(tags=["operations"])

    @r.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(await store_metrics(client), media_type=CONTENT_TYPE)

    @r.get("/health/live")
    async def live() -> dict[str, Any]:
        """Liveness: this process answers (never restart a pod because the store is down)."""
        return {"status": "ok"}

    @r.get("/health")
    async def health(max_age: float | None = None) -> JSONResponse:
        """Readiness: 200 when the store is usable (even degraded), 503 when it is not."""
        h = await check(client, max_age)
        return JSONResponse(h.to_dict(), status_code=503 if h.status == "down" else 200)

    return r
