"""The inline side of "cancel a running job from another process": a second app on the
same SQLite file asks, the worker hears it at its next lease renewal."""

from __future__ import annotations

import asyncio

import pytest

from tests.worker.worker_helpers import running, wait_until
from workhorse import JobCancelled, JobContext, JobState, Workhorse

pytestmark = pytest.mark.timeout(30)


async def test_a_running_inline_job_cancelled_from_another_app_sees_it_and_stops(
    app: Workhorse, other: Workhorse
) -> None:
    started = asyncio.Event()
    seen: list[bool] = []

    @app.task(retries=3)
    async def waits(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append(ctx.cancelled)
            raise

    async with running(app, queues=["default"], concurrency=1, lease=1.5) as worker:
        waiter = asyncio.ensure_future(app.run("waits", timeout=20))
        await asyncio.wait_for(started.wait(), 20)
        job_id = next(iter(worker._running))
        assert await other.cancel(job_id) is JobState.ACTIVE
        with pytest.raises(JobCancelled):
            await waiter
        assert seen == [True]
        record = await other.get_job(job_id)
        assert record is not None
        assert (record.state, record.attempts) == (JobState.CANCELLED, 1)
        await wait_until(lambda: worker.active == 0, 5, "the slot to be free")
