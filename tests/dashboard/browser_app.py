"""The app the browser tests serve and work: a quick task, a failing one, a slow one with
progress, a payload with a secret, a hook that fails on one user's signup (parked), and a
flow like the demo's whose steps take a moment each (its graph turns green step by step),
and one that waits for a signal."""

import asyncio
from typing import Any

from workhorse import JobContext, JobEvent, Workhorse

app = Workhorse(poll_interval=0.1, heartbeat_interval=1.0)


@app.task
async def signup(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.log("signing up", user=data.get("user"))
    return {"ok": True}


@app.task(retries=0)
async def boom(data: dict[str, Any]) -> None:
    raise ValueError("the mail server said no")


@app.task
async def crawl(data: dict[str, Any], ctx: JobContext) -> None:
    for step in range(1, 21):
        ctx.log("fetched a page", page=step)
        await ctx.progress(step * 5)
        await asyncio.sleep(0.3)


@app.on("job.completed", task="signup", name="ledger")
async def ledger(event: JobEvent) -> None:
    if isinstance(event.data, dict) and event.data.get("user") == "mallory":
        raise ConnectionError("ledger database is down")


# The demo's order flow, each step a second: receive, charge and reserve, ship (a join).
@app.task(flow="order", entry=True)
async def receive(order: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    return {"order": order.get("id"), "total": order.get("total", 1)}


@app.task(flow="order", subscribes=["step:receive"])
async def charge(received: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    return {"charged": received["total"]}


@app.task(flow="order", subscribes=["step:receive"])
async def reserve(received: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    return {"reserved": received["order"]}


@app.task(flow="order", subscribes=["step:charge", "step:reserve"])
async def ship(inputs: dict[str, Any]) -> str:
    await asyncio.sleep(1.0)
    return "shipped"


# A flow whose second step waits for a signal: its page sits still until the signal comes.
@app.task(flow="approval", entry=True)
async def ask(data: dict[str, Any]) -> dict[str, Any]:
    return data


@app.task(flow="approval", subscribes=["step:ask"], wait={"signal": "approved"})
async def approve(data: dict[str, Any]) -> str:
    return "approved"
