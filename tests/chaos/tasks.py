"""The tasks the chaos workers run. Each writes its own ledger rows; the producer side
builds the same app (without a ledger) so that it can enqueue by name."""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import time
from typing import Any

from tests.chaos.ledger import Writer
from workhorse import JobContext, Workhorse

WORKER_OPTIONS = (
    "queues",
    "concurrency",
    "lease",
    "poll_interval",
    "shutdown_grace",
    "reclaim_interval",
    "heartbeat_interval",
)
TICK = "* * * * * *"  # every second (six fields, seconds first)
LEDGER_ENV = "WH_CHAOS_LEDGER"  # how a process-runtime child finds the ledger
POISON_RETRIES = 2  # max_attempts 3
POISON_MEMORY = 1 << 30  # the process runtime's memory_limit for poison jobs


def build(url: str, ledger: str | None, *, cron: bool = False, **settings: Any) -> Workhorse:
    app = Workhorse(url, **settings)
    writer = Writer(ledger) if ledger is not None else None
    if ledger is not None:
        os.environ[LEDGER_ENV] = ledger  # inherited by the children it spawns

    def mark(ctx: JobContext, event: str, info: str = "") -> None:
        if writer is not None:
            writer.write(ctx.job_id, event, ctx.attempt, info)

    async def work(data: dict[str, Any], ctx: JobContext) -> dict[str, int]:
        """A job with a side effect: start, some work, the effect, the finish."""
        mark(ctx, "start")
        if data.get("sleep"):
            await asyncio.sleep(float(data["sleep"]))
        if data.get("fail_first") and ctx.attempt == 1:
            mark(ctx, "raised")  # a retry follows; "finish" is for the attempt that succeeds
            raise RuntimeError("flaky: fails its first attempt")
        mark(ctx, "effect")
        mark(ctx, "finish")
        return {"pid": writer.pid if writer else 0, "attempt": ctx.attempt}

    # The scenarios' own budget: a healthy job outlives many kills, and the poison jobs
    # that share its claim and kill its worker (each death is a stall for every job the
    # worker ran).
    app.task(name="work", retries=20, max_stalls=20)(work)
    app.task(name="plain")(work)  # every option at its default, as a new user writes it

    @app.task(name="block", retries=20, max_stalls=20)
    async def block(data: dict[str, Any], ctx: JobContext) -> dict[str, int]:
        """A bad async handler: blocks its event loop (no await) for ``block`` seconds."""
        mark(ctx, "start")
        time.sleep(float(data["block"]))  # noqa: ASYNC251 - the fault under test
        mark(ctx, "effect")
        mark(ctx, "finish")
        return {"pid": writer.pid if writer else 0, "attempt": ctx.attempt}

    # The same poison in both runtimes: inline it takes its worker down with it (exit,
    # segv); in a child process only the child dies.
    app.task(name="poison", retries=POISON_RETRIES, backoff=0.2)(poison)
    app.task(name="crash")(poison)  # inline poison with every option at its default
    app.task(
        name="poison_process",
        runtime="process",
        memory_limit=POISON_MEMORY,
        retries=POISON_RETRIES,
        backoff=0.2,
    )(poison)

    app.task(name="work_process", runtime="process", retries=20, max_stalls=20)(work_in_child)

    if cron:

        @app.task(name="tick", cron=TICK)
        async def tick(ctx: JobContext) -> None:
            """Names the tick it was fired for: the job's creation time (store's clock)."""
            mark(ctx, "tick", f"{ctx.lease.created_at:.6f}")

    app.ledger = writer  # type: ignore[attr-defined]
    return app


_child_writer: Writer | None = None


def _ledger_here() -> Writer | None:
    """This process's writer, for the module-level tasks a child process runs."""
    global _child_writer
    path = os.environ.get(LEDGER_ENV)
    if path is None:
        return None
    if _child_writer is None or _child_writer.pid != os.getpid():
        _child_writer = Writer(path)
    return _child_writer


def work_in_child(data: dict[str, Any], ctx: JobContext) -> dict[str, int]:
    """``work`` for the process runtime: start, effect, finish, from the child."""
    writer = _ledger_here()
    if writer is not None:
        for event in ("start", "effect", "finish"):
            writer.write(ctx.job_id, event, ctx.attempt)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


def poison(data: dict[str, Any], ctx: JobContext) -> None:
    """A job that never succeeds, by ``data["kind"]``: ``raise``, ``exit`` (os._exit(1)),
    ``segv`` (reads address 0) or ``oom`` (allocates until the memory limit refuses).
    Module level, so that a process-runtime child can import it."""
    writer = _ledger_here()
    if writer is not None:
        writer.write(ctx.job_id, "start", ctx.attempt, data["kind"])
    kind = data["kind"]
    if kind == "exit":
        os._exit(1)
    if kind == "segv":
        ctypes.string_at(0)
    if kind == "oom":
        if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
            raise RuntimeError("poison 'oom' runs only under a memory_limit")
        # bytes(n) is calloc'd: the address space fills up (RLIMIT_AS refuses it) without
        # the machine's RAM being touched.
        hoard = []
        while True:
            hoard.append(bytes(64 << 20))
    raise RuntimeError(f"poison: always raises ({kind})")
