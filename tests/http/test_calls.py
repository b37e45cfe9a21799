"""Inline calls under a job record: a caller that goes away, an operator's cancel."""

from __future__ import annotations

import asyncio

from workhorse import JobContext, Workhorse
from workhorse.http.calls import InlineCalls


def _app() -> tuple[Workhorse, asyncio.Event]:
    app = Workhorse("memory://", poll_interval=0.05, lease=0.3)
    started = asyncio.Event()

    @app.task(mode="http")
    async def waits(data: dict[str, object], ctx: JobContext) -> dict[str, object]:
        ctx.log("started")
        started.set()
        await asyncio.sleep(30)
        return {}

    return app, started


async def test_a_caller_that_goes_away_cancels_the_handler_and_the_record_says_so() -> None:
    app, started = _app()
    async with app:
        calls = InlineCalls(app.client)
        call = asyncio.create_task(calls.call(calls.record(app.get_task("waits"), {})))
        await started.wait()
        (job,) = await app.jobs(task="waits")
        assert job.state == "active" and job.queue == calls.queue
        call.cancel()
        for _ in range(100):
            job = await app.get_job(job.id)  # type: ignore[assignment]
            if job is not None and job.finished:
                break
            await asyncio.sleep(0.02)
        assert job is not None and job.state == "cancelled"
        assert job.error is not None and job.error["message"] == "the HTTP caller went away"
        assert [line["message"] for line in job.logs] == ["started"]
        await calls.close()


async def test_an_operators_cancel_stops_a_running_call() -> None:
    app, started = _app()
    async with app:
        calls = InlineCalls(app.client)
        call = asyncio.create_task(calls.call(calls.record(app.get_task("waits"), {})))
        await started.wait()
        (job,) = await app.jobs(task="waits")
        await app.cancel(job.id)  # seen at the next renewal (lease 0.3 s: every 0.1 s)
        job_id, outcome = await asyncio.wait_for(call, 5)
        assert (job_id, outcome.kind) == (job.id, "cancelled")
        await calls.close()
