"""``python -m bench.hooks``: what durable hooks deliver, per backend.

- latency: a worker and a listener run in this process while jobs are enqueued at a
  steady rate; each hook call records ``time.time() - event.finished_at`` (the finish as
  the store wrote it, to the handler being called). p50 / p99 / max.
- throughput: N completed jobs sit in the log; one listener (a fresh group, from the
  start) delivers them to a no-op hook; completions handled per second, each joined with
  its job's record (payload and result) as users get them.

    python -m bench.hooks                         # redis
    python -m bench.hooks --backends redis,sqlite,postgres --jobs 10000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench.measure import Servers, fresh_store
from workhorse import JobEvent, Workhorse


def build(url: str) -> Workhorse:
    app = Workhorse(url, poll_interval=0.05, hook_poll_interval=0.02)

    @app.task
    async def noop(n: int) -> int:
        return n

    return app


async def latency(url: str, jobs: int, rate: float) -> dict[str, float]:
    app = build(url)
    lags: list[float] = []

    @app.on("job.completed", name="lag")
    async def record(e: JobEvent) -> None:
        lags.append(time.time() - (e.finished_at or 0.0))

    async with app:
        await app.start_worker(concurrency=20)
        listener = await app.start_listener(group="latency")
        while not listener.held:
            await asyncio.sleep(0.01)
        for n in range(jobs):
            await app.enqueue("noop", n)
            await asyncio.sleep(1 / rate)
        deadline = time.monotonic() + 60
        while len(lags) < jobs and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    lags.sort()
    return {
        "p50_ms": statistics.median(lags) * 1000,
        "p99_ms": lags[int(len(lags) * 0.99)] * 1000,
        "max_ms": lags[-1] * 1000,
        "delivered": len(lags),
    }


async def throughput(url: str, jobs: int) -> dict[str, float]:
    app = build(url)
    seen = 0

    @app.on("job.completed", name="count")
    async def count(e: JobEvent) -> None:
        nonlocal seen
        seen += 1

    async with app:
        for start in range(0, jobs, 1000):
            await app.enqueue_many("noop", range(start, min(jobs, start + 1000)))
        worker = app.worker(concurrency=50, burst=True)
        await worker.run()
        began = time.perf_counter()
        await app.start_listener(group="throughput", from_start=True)
        deadline = time.monotonic() + 120
        while seen < jobs and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - began
        await app.stop_listener()
    return {"per_s": seen / elapsed, "delivered": seen, "seconds": elapsed}


async def main(args: argparse.Namespace) -> None:
    servers = Servers()
    for kind in args.backends.split(","):
        async with fresh_store(kind, servers) as url:
            lat = await latency(url, args.latency_jobs, args.rate)
        async with fresh_store(kind, servers) as url:
            thr = await throughput(url, args.jobs)
        print(
            f"{kind:8} latency finish->hook p50 {lat['p50_ms']:.0f} ms, "
            f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms "
            f"({lat['delivered']:.0f} jobs at {args.rate:g}/s); "
            f"listener {thr['per_s']:,.0f} completions/s "
            f"({thr['delivered']:.0f} in {thr['seconds']:.2f} s)"
        )


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--backends", default="redis")
    p.add_argument("--jobs", type=int, default=10_000, help="completions for throughput")
    p.add_argument("--latency-jobs", type=int, default=500)
    p.add_argument("--rate", type=float, default=100.0, help="enqueues per second")
    ns: Any = p.parse_args(argv)
    asyncio.run(main(ns))


if __name__ == "__main__":
    cli()
