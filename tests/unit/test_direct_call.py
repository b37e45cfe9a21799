"""workhorse.testing.call: a task's handler run directly, with no store, as a worker would."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from workhorse import JobContext, Workhorse
from workhorse.errors import PayloadError
from workhorse.testing import call, make_context


class Email(BaseModel):
    to: str


app = Workhorse("memory://")


@app.task(mode="http", timeout=0.2)
async def send_email(data: Email, ctx: JobContext) -> dict[str, object]:
    ctx.log("sending", to=data.to)
    await ctx.progress(50)
    await ctx.enqueue("audit", {"to": data.to})
    return {"sent": True, "to": data.to}


@app.task
def add(data: dict[str, int]) -> int:
    return data["a"] + data["b"]


@app.task(timeout=0.05)
async def hangs(data: None = None) -> None:
    import asyncio

    await asyncio.sleep(5)


@app.task
async def unjsonable(data: None = None) -> object:
    return object()


async def test_call_validates_runs_and_captures_logs_progress_and_follow_ups() -> None:
    ctx = make_context(send_email)
    assert await call(send_email, {"to": "a@b.c"}, ctx=ctx) == {"sent": True, "to": "a@b.c"}
    assert ctx.messages == ["sending"]
    assert ctx.lines[0]["fields"] == {"to": "a@b.c"}
    assert ctx.progress_values == [50]
    assert ctx.enqueued == [("audit", {"to": "a@b.c"}, {})]
    assert (ctx.task, ctx.attempt, ctx.queue) == ("send_email", 1, "default")


async def test_call_refuses_what_enqueue_would_and_applies_the_timeout() -> None:
    with pytest.raises(PayloadError, match="send_email"):
        await call(send_email, {"too": 1})
    with pytest.raises(TimeoutError):
        await call(hangs)
    with pytest.raises(PayloadError, match="result of task"):
        await call(unjsonable)


async def test_a_sync_task_runs_in_a_thread_and_a_context_keeps_its_log_budget() -> None:
    assert await call(add, {"a": 1, "b": 2}) == 3
    ctx = make_context("chatty", max_log_lines=3)
    for n in range(10):
        ctx.log(f"line {n}")
    notice, *kept = ctx.lines  # the budget, after one line saying how many were dropped
    assert [line["message"] for line in kept] == ["line 7", "line 8", "line 9"]
    assert notice["fields"] == {"dropped": 7}
    assert time.time() - ctx.lease.created_at < 5
