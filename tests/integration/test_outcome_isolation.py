"""One outcome the store rejects cannot hold back the others: it ends failed with the
store's reason, and the outcomes written with it or after it land (a PostgreSQL jsonb
column refuses a NUL character; the other stores take it as it is)."""

from __future__ import annotations

import asyncio

from tests.worker.worker_helpers import running
from workhorse import JobContext, JobState, Workhorse


async def test_a_rejected_outcome_does_not_hold_back_the_others(app: Workhorse) -> None:
    @app.task
    async def bad(ctx: JobContext) -> None:
        ctx.log("a NUL character \x00 in a log line")
        raise ValueError("a NUL character \x00 in the message")

    @app.task
    async def good(n: int) -> int:
        await asyncio.sleep(0.2)  # finishes after bad, so its outcome queues behind bad's
        return n

    async with running(app):
        rejected = await bad.enqueue()
        handles = [await good.enqueue(n) for n in range(3)]
        for h in handles:
            job = await app.wait(h.id, 20)
            assert job.state is JobState.COMPLETED
        job = await app.wait(rejected.id, 20)
    assert job.state is JobState.FAILED
    assert job.error is not None
    if app.backend.url.startswith("postgres"):
        assert "the store rejected the job's 'failed' outcome" in job.error["message"]
        assert "ValueError: a NUL character \\x00 in the message" in job.error["message"]
    else:
        assert job.error["message"] == "a NUL character \x00 in the message"
