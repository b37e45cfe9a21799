"""Leases: renewal keeps a long job ours; a lost lease means the finish is refused and
logged; a dead worker's job is reclaimed by the maintenance task and run again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from workhorse import Event, JobContext, JobState, Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.errors import ConfigError
from workhorse.testing import FakeClock

from .worker_helpers import running, wait_until


async def _expires_after(memory: MemoryBackend, job_id: str, when: float) -> bool:
    job = await memory.get(job_id)
    assert job is not None and job.lease_expires_at is not None
    return job.lease_expires_at.timestamp() > when


async def test_renewal_keeps_a_long_job_from_being_reclaimed(
    app: Workhorse,
    memory: MemoryBackend,
    clock: FakeClock,
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    @app.task
    async def long_job(ctx: JobContext) -> int:
        started.set()
        await release.wait()
        return ctx.attempt

    handle = await long_job.enqueue()
    async with running(app, lease=0.3):  # renewed every 0.1 s of real time
        await asyncio.wait_for(started.wait(), 5)
        for _ in range(10):  # 2 s of store time: nearly seven leases long
            now = clock.advance(0.2)
            await wait_until(
                lambda now=now: _expires_after(memory, handle.id, now + 0.25), what="a renewal"
            )
            assert await memory.reclaim_expired() == []
        release.set()
        assert await handle.result(timeout=5) == 1  # one attempt, never taken away


async def test_a_lost_lease_has_its_finish_refused_and_logged(
    app: Workhorse,
    memory: MemoryBackend,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    runs: list[int] = []

    @app.task
    async def stalls(ctx: JobContext) -> dict[str, int]:
        runs.append(ctx.attempt)
        run = len(runs)
        if run == 1:
            await release.wait()
        return {"run": run}

    handle = await stalls.enqueue()
    caplog.set_level(logging.WARNING, logger="workhorse.worker")
    # Two slots, so the reclaimed job is claimed again by this very worker while its
    # first attempt still runs.
    async with running(app, lease=5, concurrency=2, reclaim_interval=30) as worker:
        await wait_until(lambda: runs == [1], what="the first attempt")
        clock.advance(6)  # the lease runs out before any renewal (they come every 1.7 s)
        assert await memory.reclaim_expired() == [handle.id]
        # The lost try was a stall, so the rerun is still attempt 1.
        await wait_until(lambda: runs == [1, 1], what="the rerun")
        job = await app.wait(handle.id, 5)
        assert job.state is JobState.COMPLETED
        assert job.result == {"run": 2}
        release.set()  # the first attempt ends now; its result must not land
        await wait_until(
            lambda: "outcome 'completed' dropped" in caplog.text,
            what="the refused finish to be logged",
        )
        assert "no longer holds its lease" in caplog.text

        # The worker still has both of its slots.
        both = asyncio.Event()
        in_flight = 0

        @app.task
        async def pair() -> None:
            nonlocal in_flight
            in_flight += 1
            if in_flight == 2:
                both.set()
            await asyncio.wait_for(both.wait(), 5)

        await pair.enqueue_many([None, None])
        await asyncio.wait_for(both.wait(), 5)
        await wait_until(lambda: worker.active == 0, what="the pair to end")

    job = await app.get_job(handle.id)
    assert job is not None
    assert job.result == {"run": 2}
    assert (job.attempts, job.stalls) == (1, 1)


async def test_a_dead_workers_job_is_reclaimed_and_run_again(
    app: Workhorse,
    memory: MemoryBackend,
    clock: FakeClock,
) -> None:
    stalled: list[Event] = []
    app.on("job.stalled", stalled.append, local=True)

    @app.task  # every option at its default: retries=0
    async def survivor(ctx: JobContext) -> int:
        return ctx.attempt

    handle = await survivor.enqueue()
    # A worker that claims the job and dies without a word.
    (lease,) = await memory.claim(["default"], "dead-worker", 1, 10.0)
    async with running(app, reclaim_interval=0.05):
        await asyncio.sleep(0.2)
        job = await app.get_job(handle.id)
        assert job is not None
        assert job.state is JobState.ACTIVE
        assert job.worker == "dead-worker"
        clock.advance(10)
        assert await handle.result(timeout=5) == 1  # the dead worker's try was no attempt
    assert [e.job_id for e in stalled] == [handle.id]
    assert not (await memory.finish([(lease, _completed())]))[0]  # the dead one is refused


def _completed() -> object:
    from workhorse.job import Outcome

    return Outcome("completed", result=b"1")


async def test_a_job_that_kills_its_worker_every_time_stops_at_max_stalls(
    memory: MemoryBackend,
    clock: FakeClock,
) -> None:
    app = Workhorse(backend=memory)

    @app.task(retries=5, max_stalls=1)
    async def poison() -> None: ...

    handle = await poison.enqueue()
    for death in (1, 2):
        (lease,) = await memory.claim(["default"], f"doomed-{death}", 1, 1.0)
        assert lease.attempts == 1  # a death spends no attempt
        clock.advance(1)
        assert await memory.reclaim_expired() == [handle.id]
    job = await app.get_job(handle.id)
    assert job is not None
    assert (job.state, job.attempts, job.stalls) == (JobState.FAILED, 0, 2)
    assert job.error is not None
    assert "killed its worker 2 times" in job.error["message"]


async def test_max_stalls_comes_from_the_task_the_call_or_the_setting(
    memory: MemoryBackend,
) -> None:
    app = Workhorse(backend=memory, max_stalls=5)

    @app.task
    async def plain() -> None: ...

    @app.task(max_stalls=0)
    async def strict() -> None: ...

    assert (await (await plain.enqueue()).get()).max_stalls == 5  # type: ignore[union-attr]
    assert (await (await strict.enqueue()).get()).max_stalls == 0  # type: ignore[union-attr]
    bound = await plain.options(max_stalls=2).enqueue()
    assert (await bound.get()).max_stalls == 2  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="max_stalls"):
        await plain.options(max_stalls=-1).enqueue()
    with pytest.raises(ConfigError, match="max_stalls"):
        app.task(max_stalls=True)(plain.fn)


async def test_a_task_lease_shorter_than_the_workers_is_renewed_in_time(
    app: Workhorse,
    memory: MemoryBackend,
    clock: FakeClock,
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    @app.task(lease=0.3)
    async def short_lease() -> str:
        started.set()
        await release.wait()
        return "kept"

    # The worker's own lease is 30 s: its renew loop would sleep 10 s without being told.
    async with running(app, lease=30):
        await asyncio.sleep(0.1)  # the renew loop is asleep before the job arrives
        handle = await short_lease.enqueue()
        await asyncio.wait_for(started.wait(), 5)
        for _ in range(3):
            now = clock.advance(0.2)
            await wait_until(
                lambda now=now: _expires_after(memory, handle.id, now + 0.25),
                timeout=1.0,
                what="a renewal at the task's lease",
            )
            assert await memory.reclaim_expired() == []
        release.set()
        assert await handle.result(timeout=5) == "kept"
