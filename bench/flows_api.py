"""``python -m bench.flows_api``: what the flow routes cost, through httpx's ASGI
transport (no socket), on one store: start a diamond run, read an ended run, a page of
runs, and a run's events (which scan the event log).

    python -m bench.flows_api                                  # a fresh SQLite file
    python -m bench.flows_api --url redis://127.0.0.1:6379/9 --runs 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from workhorse import Workhorse
from workhorse.http import create_app

TOKEN = "bench-write-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def build(url: str) -> Workhorse:
    app = Workhorse(url, api_tokens=f"write:{TOKEN}", poll_interval=0.05)

    @app.task(name="a", flow="diamond", entry=True)
    async def a(data: Any) -> Any:
        return data

    @app.task(name="b", flow="diamond", subscribes=["step:a"])
    async def b(data: Any) -> int:
        return 1

    @app.task(name="c", flow="diamond", subscribes=["step:a"])
    async def c(data: Any) -> int:
        return 2

    @app.task(name="d", flow="diamond", subscribes=["step:b", "step:c"])
    async def d(data: Any) -> int:
        return 3

    return app


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> str:
    took = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        took.append(time.perf_counter() - t0)
    took.sort()
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    return f"p50 {statistics.median(took) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (n={n})"


async def main(url: str, runs: int) -> None:
    app = build(url)
    await app.open()
    await app.flows.clear("diamond")
    transport = httpx.ASGITransport(app=create_app(app))
    ids: list[str] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

        async def start(i: int) -> None:
            r = await http.post("/api/flows/diamond/runs", json={"n": i}, headers=AUTH)
            ids.append(r.json()["id"])

        print("POST /api/flows/diamond/runs:", await timed(runs, start))
        await app.start_worker(concurrency=4)
        while await app.flows.list("diamond", "running"):
            await asyncio.sleep(0.1)
        await app.stop_workers()

        async def get(i: int) -> None:
            await http.get(f"/api/runs/{ids[i]}", headers=AUTH)

        async def page(i: int) -> None:
            await http.get("/api/flows/diamond/runs?limit=50", headers=AUTH)

        async def events(i: int) -> None:
            await http.get(f"/api/runs/{ids[i]}/events", headers=AUTH)

        print("GET /api/runs/{id} (4 steps, ended):", await timed(min(runs, 100), get))
        print(f"GET /api/flows/diamond/runs?limit=50 ({runs} runs):", await timed(30, page))
        log = len(await app.client.events(0, 1_000_000))
        print(f"GET /api/runs/{{id}}/events ({log} events in the log):", await timed(10, events))
    await app.flows.clear("diamond")
    await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=None, help="a store URL (default: a fresh SQLite file)")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/flows_api.db"
    asyncio.run(main(url, args.runs))
