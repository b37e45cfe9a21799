"""``python -m bench.dashboard``: each dashboard page's server time with many jobs stored.

python -m bench.dashboard --jobs 100000 --backends sqlite,redis,postgres

Fills a private store (its own file, key prefix or schema; dropped after) with ``--jobs``
scheduled jobs plus a few hundred finished ones and ``--runs`` running flow runs (one
completed run, whose page walks the whole event log the first time), then times each
page through httpx's ASGI transport (no network): the median and 95th percentile of
``--repeat`` requests, ``--gap`` seconds apart (by default past the second for which open
pages share a read, so each request reads the store).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from bench.measure import DEFAULT_POSTGRES, DEFAULT_REDIS
from workhorse import Workhorse
from workhorse.dashboard import router

TOKEN = "bench-write-token"


def url_for(kind: str, tmp: Path) -> str:
    tag = uuid.uuid4().hex[:10]
    return {
        "sqlite": f"sqlite:///{tmp / 'dash.db'}",
        "redis": f"{DEFAULT_REDIS}?prefix=whdash{tag}",
        "postgres": f"{DEFAULT_POSTGRES}?schema=whdash{tag}",
    }[kind]


async def fill(app: Workhorse, jobs: int, runs: int) -> tuple[str, str, str]:
    """``jobs`` scheduled jobs and 200 finished ones (half failed), one completed flow run
    and ``runs`` running ones; a finished job's id, a scheduled one's, the run's id."""
    done = [await app.enqueue("ok", {"n": -i}) for i in range(100)]
    bad = [await app.enqueue("bad", {"n": -i}) for i in range(100)]
    run = await app.flows.start("bench", {"n": 0})
    await app.start_worker()
    for h in done + bad:
        await app.client.wait(h.id, 60)
    await run.wait(60)
    await app.stop_workers()
    for n in range(runs):
        await app.flows.start("bench", {"n": n})
    last = ""
    for start in range(0, jobs, 1000):
        items = [{"n": n, "text": f"user-{n}"} for n in range(start, min(start + 1000, jobs))]
        handles = await app.client.enqueue_many("ok", items, delay=86_400)
        last = handles[-1].id
    return done[0].id, last, run.id


async def measure(
    kind: str, jobs: int, runs: int, repeat: int, gap: float
) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        app = Workhorse(url_for(kind, Path(tmp)), api_tokens=f"write:{TOKEN}", poll_interval=0.05)

        @app.task
        async def ok(data: dict[str, Any]) -> dict[str, Any]:
            return {"ok": True}

        @app.task(retries=0)
        async def bad(data: dict[str, Any]) -> None:
            raise ValueError("no")

        @app.task(flow="bench", entry=True)
        async def take(data: dict[str, Any]) -> dict[str, Any]:
            return data

        @app.task(flow="bench", subscribes=["step:take"])
        async def give(data: dict[str, Any]) -> dict[str, Any]:
            return data

        await app.open()
        try:
            finished, waiting, run = await fill(app, jobs, runs)
            api = FastAPI()
            api.include_router(router(app))
            transport = httpx.ASGITransport(app=api)
            out: dict[str, tuple[float, float]] = {}
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
                await http.post("/admin/login", data={"token": TOKEN})
                pages = {
                    "overview": "/admin/",
                    "queue": "/admin/queues/default",
                    "queue, failed": "/admin/queues/default?state=failed",
                    "queue, page 2": None,
                    "queue, search": "/admin/queues/default?q=user-5",
                    "job (finished)": f"/admin/jobs/{finished}",
                    "job (scheduled)": f"/admin/jobs/{waiting}",
                    "schedules": "/admin/schedules",
                    "workers": "/admin/workers",
                    "hooks": "/admin/hooks",
                    "charts.json": "/admin/charts.json",
                    "flows": "/admin/flows",
                    "flow run": f"/admin/flows/runs/{run}",
                }
                first = await http.get("/admin/queues/default")
                cursor = first.text.split("cursor=", 1)[1].split('"', 1)[0]
                pages["queue, page 2"] = f"/admin/queues/default?cursor={cursor}"
                for name, path in pages.items():
                    assert path is not None
                    times = []
                    for _ in range(repeat):
                        await asyncio.sleep(gap)  # past the shared reads' second: a store read
                        t0 = time.perf_counter()
                        r = await http.get(path)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200, (name, r.status_code)
                    times.sort()
                    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                    out[name] = (statistics.median(times), p95)
            return out
        finally:
            drop = getattr(app.backend, "drop", None)
            if drop is not None:
                await drop()
            await app.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=1000, help="running flow runs stored")
    p.add_argument("--backends", default="sqlite,redis,postgres")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument(
        "--gap",
        type=float,
        default=1.1,
        help="seconds between requests; 0 measures the reads open pages share",
    )
    args = p.parse_args()
    for kind in args.backends.split(","):
        t0 = time.monotonic()
        results = asyncio.run(measure(kind, args.jobs, args.runs, args.repeat, args.gap))
        took = time.monotonic() - t0
        print(
            f"\n{kind}: {args.jobs:,} scheduled + 200 finished jobs, "
            f"{args.runs:,} running flow runs ({took:.0f}s)"
        )
        print(f"  {'page':<18} {'p50 ms':>8} {'p95 ms':>8}")
        for name, (p50, p95) in results.items():
            print(f"  {name:<18} {p50:8.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
