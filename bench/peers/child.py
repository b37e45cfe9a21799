"""One peer, one step: ``python -m bench.peers.child <peer> <mode> --url ...`` (in .venv-peers).

Modes: ``setup`` (create the store's schema), ``fill`` (enqueue n jobs, untimed),
``enqueue-one`` / ``enqueue-bulk`` (timed), ``work`` (a worker until n jobs finished),
``serve`` (a worker until killed) and ``roundtrip`` (n sequential run-and-await calls
against a serving worker). The last line on stdout is ``result <json>``.

A worker is the library's own, in this process, so CPU time and memory are the worker's.
Some libraries own the main thread once their worker starts (signal handlers, blocking
loops), so the end is watched from a thread that reports and leaves with ``os._exit``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import os
import statistics
import sys
import threading
import time
import traceback
from typing import Any

from bench.peers import common

BULK = 1000
_OUT = os.dup(1)  # libraries that redirect sys.stdout (Celery) cannot swallow the result


def say(kind: str, payload: Any = None) -> None:
    line = kind if payload is None else f"{kind} {json.dumps(payload)}"
    os.write(_OUT, (line + "\n").encode())


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


async def produce(peer: Any, args: argparse.Namespace) -> dict[str, Any]:
    h = await peer.producer(args.url)
    try:
        n = args.n
        if args.mode == "setup":
            return {}
        if args.mode == "fill":
            bulk = getattr(peer, "enqueue_bulk", None)
            for start in range(0, n, BULK):
                k = min(BULK, n - start)
                if bulk is not None:
                    await bulk(h, args.task, k)
                else:
                    for _ in range(k):
                        await peer.enqueue_one(h, args.task)
            return {"n": n}
        if args.mode == "enqueue-one":
            await peer.enqueue_one(h, common.NOOP)  # connect outside the timing
            cpu0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                await peer.enqueue_one(h, common.NOOP)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            return {"rate": n / wall, "client_cpu_us": cpu / n * 1e6, "n": n}
        if args.mode == "enqueue-bulk":
            bulk = getattr(peer, "enqueue_bulk", None)
            if bulk is None:
                return {"unsupported": "no bulk enqueue in this library"}
            await peer.enqueue_one(h, common.NOOP)
            cpu0, t0 = time.process_time(), time.perf_counter()
            for start in range(0, n, BULK):
                await bulk(h, common.NOOP, min(BULK, n - start))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            return {"rate": n / wall, "client_cpu_us": cpu / n * 1e6, "n": n}
        # roundtrip
        call = getattr(peer, "run_and_wait", None)
        if call is None:
            return {"unsupported": "no way to await a job's result"}
        for _ in range(args.warmup):  # the first ones also wait for the worker to start
            await asyncio.wait_for(call(h), 60)
        times = []
        deadline = time.monotonic() + args.deadline
        for _ in range(n):
            t0 = time.perf_counter()
            await asyncio.wait_for(call(h), 30)
            times.append((time.perf_counter() - t0) * 1000)
            if time.monotonic() > deadline:
                break
        return {
            "p50_ms": statistics.median(times),
            "p99_ms": percentile(times, 0.99),
            "mean_ms": statistics.fmean(times),
            "n": len(times),
        }
    finally:
        await peer.close(h)


def work(peer: Any, args: argparse.Namespace) -> None:
    """Run the library's worker until ``n`` jobs finished (or the deadline), report, leave."""
    tally = common.Tally(args.n if args.mode == "work" else 1 << 62)
    common.TALLY = tally

    def watch() -> None:
        finished = tally.done.wait(args.deadline)
        if not finished or tally.first is None or tally.last is None:
            say("result", {"error": f"{tally.finished()} of {args.n} jobs in {args.deadline} s"})
            os._exit(1)
        (t0, c0), (t1, c1) = tally.first, tally.last
        intervals = max(1, args.n - 1)  # timed from the first finish to the last
        say(
            "result",
            {
                "rate": intervals / (t1 - t0),
                "worker_cpu_us": (c1 - c0) / intervals * 1e6,
                "rss_mb": rss_mb(),
                "seconds": t1 - t0,
                "n": args.n,
            },
        )
        os._exit(0)

    if args.mode == "work":
        threading.Thread(target=watch, daemon=True).start()
    peer.work(args.url, args.concurrency)
    say("result", {"error": f"the worker returned after {tally.finished()} jobs"})


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.peers.child")
    p.add_argument("peer")
    p.add_argument(
        "mode",
        choices=["setup", "fill", "enqueue-one", "enqueue-bulk", "work", "serve", "roundtrip"],
    )
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--task", default=common.NOOP)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--deadline", type=float, default=120.0)
    args = p.parse_args()
    try:
        peer = importlib.import_module(f"bench.peers.{args.peer}_peer")
        if args.mode in ("work", "serve"):
            work(peer, args)
            return
        if args.mode == "setup" and hasattr(peer, "setup"):
            asyncio.run(peer.setup(args.url))
            say("result", {})
            return
        say("result", asyncio.run(produce(peer, args)))
    except BaseException as exc:
        traceback.print_exc()
        say("result", {"error": f"{type(exc).__name__}: {exc}"})
        sys.stderr.flush()
        os._exit(1)


if __name__ == "__main__":
    main()
