"""The app the browser tests serve and work: a quick task, a failing one, a slow one with
progress, a payload with a secret, and a hook that fails on one user's signup (parked)."""

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
