"""``python -m bench.flows``: what a flow step costs against a plain job, per backend.

- plain: N no-op jobs are enqueued, then one worker (concurrency 50) runs them all.
- chain: N/4 chains of 4 plain jobs, each enqueuing the next with ``ctx.enqueue`` (what a
  user writes without flows), the same worker.
- flow: N/4 runs of a 4-step chain (entry -> s2 -> s3 -> s4, each a no-op) are started,
  then the same worker runs every step; each run's end is checked after its last step.

Each phase collects the cyclic garbage left by the phases before it (their apps and
stores, tens of thousands of objects) just before its clock starts, so that no phase pays
for another's full collection; the collections its own work triggers are its own.

``--fan``: also N/10 runs of a flow that is not closed (an entry emitting 9 parts, each a
step), whose steps keep a count of the run's live steps instead of checking the run.

Printed: jobs (steps) per second, the flow/plain throughput ratio, and store calls per
job: every call the worker's process makes to the backend (``get``, ``kv_*``, ``claim``,
``finish``, ...) while the worker runs, divided by the jobs run; the difference is what
flows add per step. A call is one round trip on Redis, SQLite and PostgreSQL (the finisher
batches finishes, so plain jobs cost less than one finish call each). The flow's calls
include its events: a step's step.started and step.completed go with its outcome in the
finish where the store can (``Capabilities.finish_events``), else in ``publish`` batches,
as each run's flow.completed does; ``--detail`` lists the calls by method.

    python -m bench.flows                                  # all four backends
    python -m bench.flows --backends redis --jobs 8000
    python -m bench.flows --jobs 8000 --rounds 5           # medians: one run swings widely
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextvars
import gc
import inspect
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.measure import Servers, fresh_store
from workhorse import JobContext, Workhorse
from workhorse.backends import Backend

CHAIN = 4
FAN = 9  # parts per run of the fan-out flow


def build(url: str) -> Workhorse:
    app = Workhorse(url, poll_interval=0.05)

    @app.task
    async def noop(n: int) -> int:
        return n

    @app.task
    async def link(n: list[int], ctx: JobContext) -> int:
        if n[1] < CHAIN:
            await ctx.enqueue("link", [n[0], n[1] + 1])
        return n[0]

    @app.task(name="s1", flow="chain", entry=True)
    async def s1(n: int) -> int:
        return n

    for i in range(2, CHAIN + 1):

        async def step(n: int) -> int:
            return n

        app.add_task(step, name=f"s{i}", flow="chain", subscribes=[f"step:s{i - 1}"])

    @app.task(name="spread", flow="fan", entry=True, emits=["part"])
    async def spread(n: int, ctx: JobContext) -> int:
        for i in range(FAN):
            await ctx.flow.emit("part", i)
        return n

    @app.task(name="part", flow="fan", subscribes=["part"])
    async def part(i: int) -> int:
        return i

    return app


def count_calls(backend: Backend) -> collections.Counter[str]:
    """Count each call of the backend's async methods (an instance attribute wraps each)."""
    calls: collections.Counter[str] = collections.Counter()
    # A method built on another (get_many over get) counts once: per task, so that the
    # worker's concurrent calls are not taken for nested ones.
    inside: contextvars.ContextVar[bool] = contextvars.ContextVar("inside", default=False)
    # The contract's coroutine methods, by name: a store may implement one as a plain
    # method returning an awaitable (Redis's enqueue joins a group commit).
    contract = {n for n, _ in inspect.getmembers(Backend, inspect.iscoroutinefunction)}
    for name, fn in inspect.getmembers(backend, callable):
        if name.startswith("_") or name in ("open", "close", "wait_for_jobs"):
            continue
        if name not in contract and not inspect.iscoroutinefunction(fn):
            continue

        def wrap(f: Callable[..., Any], n: str) -> Callable[..., Awaitable[Any]]:
            async def counted(*args: Any, **kwargs: Any) -> Any:
                if inside.get():
                    return await f(*args, **kwargs)
                calls[n] += 1
                token = inside.set(True)
                try:
                    return await f(*args, **kwargs)
                finally:
                    inside.reset(token)

            return counted

        setattr(backend, name, wrap(fn, name))
    count_commits(backend, calls)
    return calls


def store_calls(calls: collections.Counter[str]) -> int:
    """The backend calls counted, not the ``(commits)`` and ``(cpu us)`` tallies."""
    return sum(n for name, n in calls.items() if not name.startswith("("))


def count_commits(backend: Backend, calls: collections.Counter[str]) -> None:
    """Also count the store's transactions, under ``(commits)``: PostgreSQL statements
    (each its own transaction) and SQLite write transactions. Private hooks: a bench's
    look inside, not an API."""
    rows = getattr(backend, "_rows", None)
    if rows is not None:

        async def statement(*args: Any, **kwargs: Any) -> Any:
            calls["(commits)"] += 1
            return await rows(*args, **kwargs)

        setattr(backend, "_rows", statement)  # noqa: B010
    db = getattr(backend, "_db", None)
    tx_on = getattr(db, "tx_on", None)
    if db is not None and tx_on is not None:

        def transaction(*args: Any, **kwargs: Any) -> Any:
            calls["(commits)"] += 1
            return tx_on(*args, **kwargs)

        setattr(db, "tx_on", transaction)  # noqa: B010


async def timed_run(app: Workhorse, jobs: int) -> tuple[float, float]:
    """Run a burst worker until it has processed ``jobs``: seconds and this process's CPU.
    The clock stops at the last job, not at the worker's exit, which first waits for the
    queues to stay empty a while (0.2 s: a third of a 4,000-job plain run at 20,000/s)."""
    worker = app.worker(concurrency=50, burst=True)
    # The previous phase's app and store are cyclic garbage: collected here, not charged
    # to this phase by a full collection inside its window.
    gc.collect()
    began, cpu = time.perf_counter(), time.process_time()
    run = asyncio.create_task(worker.run())
    while worker.processed < jobs and not run.done():
        await asyncio.sleep(0.001)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    await run
    return elapsed, cpu


async def plain(url: str, jobs: int) -> tuple[float, float, dict[str, int]]:
    app = build(url)
    async with app:
        for start in range(0, jobs, 1000):
            await app.enqueue_many("noop", range(start, min(jobs, start + 1000)))
        calls = count_calls(app.backend)
        elapsed, cpu = await timed_run(app, jobs)
        calls["(cpu us)"] += round(cpu * 1e6)
    return jobs / elapsed, store_calls(calls) / jobs, dict(calls)


async def chain(url: str, jobs: int) -> tuple[float, float, dict[str, int]]:
    app = build(url)
    runs = jobs // CHAIN
    async with app:
        await app.enqueue_many("link", [[n, 1] for n in range(runs)])
        calls = count_calls(app.backend)
        elapsed, cpu = await timed_run(app, runs * CHAIN)
        calls["(cpu us)"] += round(cpu * 1e6)
    steps = runs * CHAIN
    return steps / elapsed, store_calls(calls) / steps, dict(calls)


async def flow(url: str, jobs: int) -> tuple[float, float, dict[str, int]]:
    app = build(url)
    runs = jobs // CHAIN
    async with app:
        handles = [await app.flows.start("chain", n) for n in range(runs)]
        calls = count_calls(app.backend)
        elapsed, cpu = await timed_run(app, runs * CHAIN)
        calls["(cpu us)"] += round(cpu * 1e6)
        left = await app.flows.list("chain", "running", limit=None)
        assert not left, f"{len(left)} runs did not end"
        assert await handles[-1].result(timeout=1) == {f"s{CHAIN}": runs - 1}
    steps = runs * CHAIN
    return steps / elapsed, store_calls(calls) / steps, dict(calls)


async def fan(url: str, jobs: int) -> tuple[float, float, dict[str, int]]:
    app = build(url)
    runs = jobs // (FAN + 1)
    async with app:
        for n in range(runs):
            await app.flows.start("fan", n)
        calls = count_calls(app.backend)
        elapsed, cpu = await timed_run(app, runs * (FAN + 1))
        calls["(cpu us)"] += round(cpu * 1e6)
        left = await app.flows.list("fan", "running", limit=None)
        assert not left, f"{len(left)} runs did not end"
    steps = runs * (FAN + 1)
    return steps / elapsed, store_calls(calls) / steps, dict(calls)


async def main(args: argparse.Namespace) -> None:
    servers = Servers()
    for kind in args.backends.split(","):
        ratios: list[tuple[float, float]] = []  # (flow/plain, flow/chain) per round
        for _ in range(args.rounds):
            p_rate, p_calls, p_detail, c_rate, c_calls, f_rate, f_calls, f_detail = await _round(
                kind, servers, args.jobs
            )
            ratios.append((f_rate / p_rate, f_rate / c_rate))
            print(
                f"{kind:8} plain {p_rate:,.0f} jobs/s ({p_calls:.2f} calls/job); "
                f"chain {c_rate:,.0f} jobs/s ({c_calls:.2f}); "
                f"flow {f_rate:,.0f} steps/s ({f_calls:.2f}, +{f_calls - c_calls:.2f} over "
                f"chain); flow/plain {f_rate / p_rate:.2f}, flow/chain {f_rate / c_rate:.2f}"
            )
        if args.rounds > 1:
            fp, fc = sorted(r[0] for r in ratios), sorted(r[1] for r in ratios)
            print(
                f"{kind:8} {args.rounds} rounds: flow/plain median {statistics.median(fp):.2f} "
                f"({fp[0]:.2f}-{fp[-1]:.2f}), flow/chain median {statistics.median(fc):.2f} "
                f"({fc[0]:.2f}-{fc[-1]:.2f})"
            )
        if args.detail:
            steps = args.jobs // CHAIN * CHAIN
            for name in sorted(set(p_detail) | set(f_detail)):
                print(
                    f"    {name:16} plain {p_detail.get(name, 0) / args.jobs:6.2f}/job   "
                    f"flow {f_detail.get(name, 0) / steps:6.2f}/step"
                )
        if args.fan:
            async with fresh_store(kind, servers) as url:
                n_rate, n_calls, n_detail = await fan(url, args.jobs)
            print(f"{kind:8} fan-out flow {n_rate:,.0f} steps/s ({n_calls:.2f} calls/step)")
            if args.detail:
                steps = args.jobs // (FAN + 1) * (FAN + 1)
                for name in sorted(n_detail):
                    print(f"    {name:16} fan {n_detail[name] / steps:6.2f}/step")


async def _round(kind: str, servers: Servers, jobs: int) -> tuple[Any, ...]:
    """Plain, chain and flow once each, every one on a fresh store: a round's figures."""
    async with fresh_store(kind, servers) as url:
        p_rate, p_calls, p_detail = await plain(url, jobs)
    async with fresh_store(kind, servers) as url:
        c_rate, c_calls, _ = await chain(url, jobs)
    async with fresh_store(kind, servers) as url:
        f_rate, f_calls, f_detail = await flow(url, jobs)
    return p_rate, p_calls, p_detail, c_rate, c_calls, f_rate, f_calls, f_detail


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--backends", default="memory,sqlite,redis,postgres")
    p.add_argument("--jobs", type=int, default=4000)
    p.add_argument("--detail", action="store_true", help="calls per method")
    p.add_argument("--fan", action="store_true", help="also a fan-out flow (not closed)")
    p.add_argument(
        "--rounds", type=int, default=1, help="rounds per store; more than one: their medians"
    )
    ns: Any = p.parse_args(argv)
    asyncio.run(main(ns))


if __name__ == "__main__":
    cli()
