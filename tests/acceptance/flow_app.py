"""The app of the flow acceptance test: a diamond (a -> b, c -> d) whose steps append one
line each to an independent ledger file (``FLOW_LEDGER``) as they start:
``RUN STEP PID JOB_ID``, one O_APPEND write per line so lines of several processes never mix."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from workhorse import JobContext, Workhorse

app = Workhorse()


def note(ctx: JobContext) -> None:
    line = f"{ctx.flow.run_id} {ctx.flow.step} {os.getpid()} {ctx.job_id}\n"
    fd = os.open(os.environ["FLOW_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def work(ctx: JobContext) -> None:
    note(ctx)
    await asyncio.sleep(random.uniform(0, 0.02))  # so that kills land inside steps too


@app.task(name="a", flow="diamond", entry=True)
async def a(data: Any, ctx: JobContext) -> Any:
    await work(ctx)
    return data["n"]


@app.task(name="b", flow="diamond", subscribes=["step:a"])
async def b(n: int, ctx: JobContext) -> int:
    await work(ctx)
    return n + 1


@app.task(name="c", flow="diamond", subscribes=["step:a"])
async def c(n: int, ctx: JobContext) -> int:
    await work(ctx)
    return n * 10


@app.task(name="d", flow="diamond", subscribes=["step:b", "step:c"])
async def d(data: dict[str, int], ctx: JobContext) -> int:
    await work(ctx)
    return data["step:b"] + data["step:c"]
