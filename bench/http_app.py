"""The app ``python -m bench.http`` serves with uvicorn: an http-mode no-op, a queue no-op,
and a plain FastAPI route doing nothing beside them, on the store named by WORKHORSE_URL."""

from __future__ import annotations

import os
from typing import Any

from workhorse import Workhorse
from workhorse.http import create_app

app = Workhorse(os.environ.get("WORKHORSE_URL", "memory://"))


@app.task(mode="http", http={"path": "/noop-http", "auth": False})
async def noop_http(data: dict[str, Any]) -> dict[str, Any]:
    return {}


@app.task
async def noop(data: dict[str, Any]) -> dict[str, Any]:
    return {}


api = create_app(app, insecure=True)


@api.post("/plain")
async def plain(body: dict[str, Any]) -> dict[str, Any]:
    """The baseline: a FastAPI route that parses a JSON body and answers, nothing else."""
    return {}
