"""Graceful shutdown: stop claiming, let running jobs finish within the grace, put what is
left back in its queue at once with the attempt refunded; a second stop ends the grace."""

from __future__ import annotations

import asyncio
import time

import pytest

from workhorse import JobContext, JobState, Workhorse

from .worker_helpers import wait_until


async def test_stop_lets_running_jobs_finish_within_the_grace(app: Workhorse) -> None:
    started = asyncio.Event()

    @app.task
    async def slow(ctx: JobContext) -> str:
        started.set()
        await asyncio.sleep(0.3)
        ctx.log("finished normally")
        return "done"

    @app.task
    async def unstarted() -> None: ...

    worker = app.worker(concurrency=1, shutdown_grace=10, poll_interval=0.05)
    run = asyncio.create_task(worker.run())
    handle = await slow.enqueue()
    await asyncio.wait_for(started.wait(), 5)
    waiting = await unstarted.enqueue()
    worker.stop()
    await asyncio.wait_for(run, 5)

    job = await app.get_job(handle.id)
    assert job is not None
    assert job.state is JobState.COMPLETED
    assert job.result == "done"
    assert [line["message"] for line in job.logs] == ["finished normally"]
    left = await app.get_job(waiting.id)
    assert left is not None
    assert left.state is JobState.QUEUED  # not claimed after stop()
    assert left.attempts == 0


async def test_jobs_running_after_the_grace_go_back_at_once_with_the_attempt_refunded(
    app: Workhorse,
) -> None:
    started: list[str] = []
    interrupted: list[str] = []

    @app.task(retries=2)
    async def endless(ctx: JobContext) -> None:
        started.append(ctx.job_id)
        ctx.log("begun")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            interrupted.append(ctx.job_id)
            raise

    handles = await endless.enqueue_many([None] * 3)
    worker = app.worker(concurrency=2, shutdown_grace=0.3, poll_interval=0.05)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: len(started) == 2, what="two jobs to start")
    t0 = time.monotonic()
    worker.stop()
    await asyncio.wait_for(run, 5)
    elapsed = time.monotonic() - t0

    assert 0.25 < elapsed < 2.0  # waited for the grace, then no longer
    assert sorted(interrupted) == sorted(started)
    for h in handles:
        job = await app.get_job(h.id)
        assert job is not None
        assert job.state is JobState.QUEUED  # due now, not scheduled, not leased
        assert job.attempts == 0
        assert job.worker is None
        assert job.lease_expires_at is None
    again = await app.get_job(started[0])
    assert again is not None
    assert [line["message"] for line in again.logs] == ["begun"]  # kept with the job


async def test_a_second_stop_ends_the_grace_early(app: Workhorse) -> None:
    started = asyncio.Event()

    @app.task
    async def endless() -> None:
        started.set()
        await asyncio.sleep(60)

    handle = await endless.enqueue()
    worker = app.worker(concurrency=1, shutdown_grace=30, poll_interval=0.05)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.sleep(0.2)
    assert not run.done()  # inside the 30 s grace
    t0 = time.monotonic()
    worker.stop()
    await asyncio.wait_for(run, 5)
    assert time.monotonic() - t0 < 1.0
    job = await app.get_job(handle.id)
    assert job is not None
    assert job.state is JobState.QUEUED
    assert job.attempts == 0


async def test_stop_while_idle_returns_promptly(app: Workhorse) -> None:
    worker = app.worker(poll_interval=5, shutdown_grace=30)
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(0.1)  # the consumers are waiting for jobs
    t0 = time.monotonic()
    worker.stop()
    await asyncio.wait_for(run, 5)
    assert time.monotonic() - t0 < 0.5  # not a whole poll interval


async def test_cancelling_run_puts_running_jobs_back(app: Workhorse) -> None:
    started = asyncio.Event()

    @app.task
    async def endless() -> None:
        started.set()
        await asyncio.sleep(60)

    handle = await endless.enqueue()
    # The producer's own tasks (its "jobs enqueued" writer) live until the app closes.
    before = asyncio.all_tasks()
    worker = app.worker(concurrency=1, poll_interval=0.05)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    job = await app.get_job(handle.id)
    assert job is not None
    assert job.state is JobState.QUEUED  # not left leased until the lease runs out
    assert job.attempts == 0
    leftovers = [
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and t not in before
        and (t.get_name() or "").startswith("workhorse-")
    ]
    assert leftovers == []


async def test_sync_job_interrupted_at_shutdown_goes_back(app: Workhorse) -> None:
    import threading

    release = threading.Event()
    started = threading.Event()

    @app.task
    def blocking() -> None:
        started.set()
        release.wait(20)

    handle = await blocking.enqueue()
    worker = app.worker(concurrency=1, shutdown_grace=0.1, poll_interval=0.05)
    run = asyncio.create_task(worker.run())
    try:
        await wait_until(started.is_set, what="the sync job to start")
        worker.stop()
        await asyncio.wait_for(run, 5)
        job = await app.get_job(handle.id)
        assert job is not None
        assert job.state is JobState.QUEUED
        assert job.attempts == 0
    finally:
        release.set()
