"""Process-runtime tasks for the tests. They live at module level because a child process
finds a task by importing its module; each test registers them on its own app."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from typing import Any

from workhorse import JobContext


def noop(data: Any = None) -> None:
    return None


def double(n: int) -> int:
    return n * 2


def pid() -> int:
    return os.getpid()


def spin(seconds: float) -> int:
    """CPU-bound: never yields, so only killing its process stops it."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def hard_exit(code: int) -> None:
    os._exit(code)


def allocate(mib: int) -> int:
    block = bytearray(mib << 20)
    return len(block)


def fails(message: str) -> None:
    raise ValueError(message)


async def chatty(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.log("starting", step=1)
    await ctx.progress(50)
    follow = await ctx.enqueue("double", 21)
    ctx.log("done")
    await asyncio.sleep(0)
    return {"pid": os.getpid(), "follow": follow.id, "attempt": ctx.attempt}


def pid_file(path: str) -> None:
    """Write this child's pid, then block until killed."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)


def chattier(n: int, ctx: JobContext) -> None:
    for i in range(n):
        ctx.log(f"line {i}")


async def flow_split(items: list[int], ctx: JobContext) -> dict[str, Any]:
    """A flow step in a child: state and emits go through the worker."""
    await ctx.state.set("count", len(items))
    for x in items:
        await ctx.flow.emit("item", x)
    return {
        "pid": os.getpid(),
        "run": ctx.flow.run_id,
        "step": ctx.flow.step,
        "count": await ctx.state.get("count"),
        "missing": await ctx.state.get("nope", "default"),
    }
