"""A worker process for the benchmark: ``python -m bench.child process|serve --url ...``.

Durable backends are measured the way they are deployed: the worker in its own process,
the producer in another. The child reports on stdout, one line each:
``progress <n>`` while it works and ``result <json>`` at the end (``ready`` in serve mode
once its worker consumes). The parent reads its CPU time and memory from these lines, so
they cover the worker alone, not the process start-up or the producer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib.util
import signal
import sys
import time
from typing import Any

import orjson

from bench.tasks import QUEUE, make_app
from workhorse.settings import Settings

STALL_S = 60.0  # no job finished for this long: give up, so a broken backend cannot hang us
ENQUEUE_BATCH = 1000


def say(kind: str, payload: Any = None) -> None:
    if payload is not None:
        kind += " " + orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode()
    sys.stdout.write(kind + "\n")
    sys.stdout.flush()


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    """Resident memory now, in MiB."""
    return _status_mb("VmRSS:")


def peak_rss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: on Linux that one keeps the high-water mark of the
    # process image before exec, i.e. the (large) benchmark parent that forked us.
    return _status_mb("VmHWM:")


async def process(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``n`` pre-enqueued jobs with one worker; time from worker start to the last
    finish."""
    app = make_app(args.url)
    await app.open()
    try:
        if args.enqueue:  # memory: the store lives in this process, so fill it here
            for start in range(0, args.n, ENQUEUE_BATCH):
                await app.enqueue_many(args.task, [None] * min(ENQUEUE_BATCH, args.n - start))
        worker = app.worker(queues={QUEUE: args.concurrency})
        if args.hold > 0:  # a sampling profiler attaches now, so it sees only the worker
            say("armed")
            await asyncio.sleep(args.hold)
        profiler = cProfile.Profile() if args.profile else None
        rss_before = rss_mb()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        running = asyncio.create_task(worker.run())
        last, last_change, next_report = 0, t0, t0
        rss_trace: list[tuple[int, float]] = []  # (jobs done, MiB): is memory flat?
        next_mark = args.rss_every or args.n + 1
        # When 10 % and 90 % of the jobs were done: the steady rate between leaves out the
        # worker's start (first claim, nothing held ahead yet) and the last wave's tail.
        tenth, ninth = max(1, args.n // 10), args.n - args.n // 10
        at_tenth = at_ninth = None
        while worker.processed < args.n and not running.done():
            await asyncio.sleep(0.002)
            if at_tenth is None and worker.processed >= tenth:
                at_tenth = (worker.processed, time.perf_counter())
            if at_ninth is None and worker.processed >= ninth:
                at_ninth = (worker.processed, time.perf_counter())
            if worker.processed >= next_mark:
                rss_trace.append((worker.processed, rss_mb()))
                next_mark += args.rss_every
            now = time.perf_counter()
            if worker.processed != last:
                last, last_change = worker.processed, now
            elif now - last_change > STALL_S:
                break
            if now >= next_report:
                say("progress", worker.processed)
                next_report = now + 0.25
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        steady = None
        if at_tenth is not None and at_ninth is not None and at_ninth[1] > at_tenth[1]:
            steady = (at_ninth[0] - at_tenth[0]) / (at_ninth[1] - at_tenth[1])
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        done = worker.processed
        worker.stop()
        await running  # re-raises if the worker itself crashed
        counts = {str(k): v for k, v in (await app.counts([QUEUE])).get(QUEUE, {}).items()}
        # Every job must have completed. Retention (keep_completed, 10,000 by default) may
        # already have purged some of them in a long run, so nothing else may be left.
        left = {k: v for k, v in counts.items() if k != "completed" and v}
        error = None
        if left or done < args.n or counts.get("completed", 0) > args.n:
            error = f"expected {args.n} completed jobs; {done} finished, the store counts {counts}"
        return {
            "n": args.n,
            "processed": done,
            "seconds": elapsed,
            "steady_rate": steady,
            "cpu_s": cpu,
            "rss_mb": rss_mb(),
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb(),
            "rss_trace": rss_trace,
            "counts": counts,
            "error": error,
        }
    finally:
        await app.close()


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    """Run a worker until SIGTERM (the round-trip measurement's worker)."""
    app = make_app(args.url)
    await app.open()
    try:
        worker = app.worker(queues={QUEUE: args.concurrency})
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        cpu0 = time.process_time()
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.05)  # let it reach its first claim
        if running.done():
            await running
        say("ready")
        await running
        return {
            "processed": worker.processed,
            "cpu_s": time.process_time() - cpu0,
            "rss_mb": rss_mb(),
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        await app.close()


def loop_run() -> Any:
    """The worker's loop as `workhorse worker` picks it (WORKHORSE_EVENT_LOOP; the default
    is "auto", uvloop where installed, on trees that have it, and asyncio on older ones)."""
    chosen = getattr(Settings.load(), "event_loop", "asyncio")  # older trees: none
    if chosen == "uvloop" or (chosen == "auto" and importlib.util.find_spec("uvloop")):
        return importlib.import_module("uvloop").run
    return asyncio.run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("mode", choices=["process", "serve"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--task", default="noop")
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--enqueue", action="store_true", help="fill the store first")
    parser.add_argument("--profile", help="write a cProfile of the timed part here")
    parser.add_argument(
        "--rss-every", type=int, default=0, help="note the RSS every this many jobs"
    )
    parser.add_argument(
        "--hold", type=float, default=0.0, help="say 'armed' and wait this long before timing"
    )
    args = parser.parse_args(argv)
    run = process if args.mode == "process" else serve
    try:
        result = loop_run()(run(args))
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
    say("result", result)


if __name__ == "__main__":
    main()
