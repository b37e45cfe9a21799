"""``python -m bench.http_asgi URL``: the CPU time per request of each route of
``bench/http_app.py`` called in-process through ASGI (no socket, no load generator), 16
requests in flight; prints JSON {route: microseconds}. ``bench.http`` runs it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import orjson

ROUTES = ("/plain", "/noop-http", "/api/tasks/noop/jobs")


async def request(api: Any, path: str, body: bytes = b"{}") -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client never hangs up
        raise AssertionError

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await api(scope, receive, send)
    return status


async def measure(n: int = 3000, in_flight: int = 16) -> dict[str, float]:
    from bench.http_app import api, app

    out = {}
    async with app:
        for path in ROUTES:
            for _ in range(200):  # warm
                await request(api, path)

            async def client(path: str = path) -> None:
                for _ in range(n // in_flight):
                    status = await request(api, path)
                    assert status in (200, 202), (path, status)

            c0 = time.process_time()
            await asyncio.gather(*(client() for _ in range(in_flight)))
            out[path] = 1e6 * (time.process_time() - c0) / (n // in_flight * in_flight)
    return out


if __name__ == "__main__":
    os.environ["WORKHORSE_URL"] = sys.argv[1]
    print(orjson.dumps(asyncio.run(measure())).decode())
