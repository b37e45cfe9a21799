"""The demo's HTTP section: serve the API on loopback, call an http and a both task."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import uvicorn

from workhorse.app import Workhorse
from workhorse.http import create_app


def _post(url: str, body: Any, token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read()), dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


async def serve_and_call(app: Workhorse, showcase: list[str]) -> list[str]:
    """Lines to print; raises RuntimeError when an answer is not the expected one."""
    tokens = app.settings.api_tokens
    assert tokens is not None, "the demo configures a write token"
    token = tokens.get_secret_value().partition(":")[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(app), port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    out = [f"serving the API at [bold]{base}/api[/] (uvicorn, a bearer token of scope write)"]
    try:
        while not server.started:
            if serving.done():
                raise RuntimeError("the API server did not start")
            await asyncio.sleep(0.02)
        status, body, headers = await asyncio.to_thread(
            _post, f"{base}/api/quote", {"name": "Ada"}, token
        )
        if status != 200:
            raise RuntimeError(f"POST /api/quote answered {status}: {body}")
        showcase.append(headers["workhorse-job-id"])
        out.append(f"POST /api/quote ([bold]quote[/], mode=http) → {status} {body}")
        out.append("  it ran in the server process, under a job record the CLI shows")
        status, body, _ = await asyncio.to_thread(
            _post, f"{base}/api/tasks/greet/call", {"name": "Grace"}, token
        )
        out.append(f"POST /api/tasks/greet/call ([bold]greet[/], mode=both) → {status} {body}")
        status, body, _ = await asyncio.to_thread(
            _post, f"{base}/api/tasks/greet/jobs?wait=10", {"name": "Linus"}, token
        )
        if status != 200 or body.get("state") != "completed":
            raise RuntimeError(f"POST /api/tasks/greet/jobs?wait=10 answered {status}: {body}")
        out.append(
            f"POST /api/tasks/greet/jobs?wait=10 → {status}: the worker ran job "
            f"{body['id']} → {body['result']}"
        )
        status, body, _ = await asyncio.to_thread(_post, f"{base}/api/quote", {"name": ""}, token)
        out.append(f"POST /api/quote with an empty name → {status} {body['error']['type']}")
    finally:
        server.should_exit = True
        await serving
    return out
