"""``python -m bench.delay``: how late scheduled jobs start, idle and under load.

python -m bench.delay --backends memory,sqlite,redis,postgres --jobs 300

Each backend gets a fresh store and a worker at the default settings in this process.
``--jobs`` jobs are enqueued with ``at=`` due times spread over ``--spread`` seconds; each
job's handler notes how long after its due time it started (the store's clock and this
one are the same machine's). "idle": nothing else is queued. "busy": a producer keeps
no-op jobs coming at ``--load`` jobs/s in batches every 20 ms, so the worker claims
and finishes the whole time. The figures are the lateness p50, p99 and max in ms
(issue 16's target: p99 within 10 ms), with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from typing import Any

from bench.measure import BACKENDS, Servers, fresh_store, percentile
from bench.tasks import NOOP, QUEUE, make_app

LEAD = 0.3  # seconds before the first due time: enqueueing must be over by then
BATCH_EVERY = 0.02  # seconds between the busy producer's batches


async def _late(kind: str, servers: Servers, jobs: int, spread: float, load: int) -> list[float]:
    """Lateness in seconds of ``jobs`` scheduled jobs on a fresh ``kind`` store."""
    late: list[float] = []
    done = asyncio.Event()

    async def stamp(data: dict[str, Any]) -> None:
        late.append(time.time() - data["at"])
        if len(late) == jobs:
            done.set()

    async with fresh_store(kind, servers) as url, make_app(url) as app:
        app.add_task(stamp, name="stamp", queue=QUEUE)
        await app.counts([QUEUE])  # create the store before the worker races to
        worker = app.worker()
        running = asyncio.create_task(worker.run())
        stop = asyncio.Event()
        feeder = asyncio.create_task(_feed(app, load, stop)) if load else None
        try:
            start = time.time() + LEAD
            dues = sorted(start + random.uniform(0, spread) for _ in range(jobs))
            await asyncio.gather(*(app.enqueue("stamp", {"at": at}, at=at) for at in dues))
            await asyncio.wait_for(done.wait(), LEAD + spread + 30)
        finally:
            stop.set()
            if feeder is not None:
                await feeder
            worker.stop()
            await running
    return late


async def _feed(app: Any, rate: int, stop: asyncio.Event) -> None:
    """No-op jobs at ``rate`` a second until ``stop``."""
    task = app.get_task(NOOP)
    per = max(1, round(rate * BATCH_EVERY))
    while not stop.is_set():
        await app.enqueue_many(task, [None] * per)
        await asyncio.sleep(BATCH_EVERY)


def _row(kind: str, mode: str, late: list[float]) -> str:
    ms = sorted(x * 1000 for x in late)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"| {kind} | {mode} | {len(ms)} | {statistics.median(ms):.2f} | "
        f"{percentile(ms, 0.99):.2f} | {ms[-1]:.2f} | {ms[0]:.2f} | {load} |"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.delay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--spread", type=float, default=3.0, help="seconds the due times span")
    p.add_argument("--load", type=int, default=1000, help="no-op jobs/s in the busy runs")
    args = p.parse_args(argv)
    print("| backend | run | jobs | late p50 ms | p99 ms | max ms | min ms | load average |")
    print("| --- | --- | --: | --: | --: | --: | --: | --- |")
    for kind in [k for k in args.backends.split(",") if k]:
        for mode, load in (("idle", 0), ("busy", args.load)):
            late = asyncio.run(_late(kind, Servers(), args.jobs, args.spread, load))
            print(_row(kind, mode, late), flush=True)


if __name__ == "__main__":
    main()
