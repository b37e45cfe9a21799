"""The worker's retention sweep applies each job's own keep_for on the fake clock, even
when the settings keep finished jobs forever."""

from __future__ import annotations

from workhorse import JobState, Workhorse
from workhorse.testing import FakeClock

from .worker_helpers import running


async def test_the_sweep_drops_a_job_once_its_keep_for_has_passed(
    app: Workhorse, clock: FakeClock
) -> None:
    @app.task(keep_for=60)
    async def track_click() -> None: ...

    @app.task
    async def export() -> None: ...

    short = await track_click.enqueue()
    plain = await export.enqueue()
    async with running(app, queues=["default"]) as worker:
        for handle in (short, plain):
            assert (await app.wait(handle.id, 5)).state is JobState.COMPLETED
        clock.advance(59)
        # Both settings off (None): only jobs with their own keep_for ever expire.
        await worker._retention(None, None, {JobState.COMPLETED})
        assert await app.get_job(short.id) is not None
        clock.advance(2)
        await worker._retention(None, None, {JobState.COMPLETED})
    assert await app.get_job(short.id) is None
    assert await app.get_job(plain.id) is not None
