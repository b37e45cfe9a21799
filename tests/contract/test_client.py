"""The client API through a real worker on each backend: what an application sees."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from workhorse import JobCancelled, JobContext, JobFailed, Task, Worker, Workhorse
from workhorse.job import JobState

from .support import eventually, settled_log

RUN = 10.0  # the longest a run() waits here; a pass takes a fraction of it
STOP = 10.0  # the longest a stopping worker with nothing to run may take


def task(app: Workhorse, **options: Any) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
    """``@app.task(...)`` with its type spelled out: ``Workhorse.task`` returns Any."""
    register: Callable[[Callable[..., Any]], Task[Any, Any]] = app.task(**options)
    return register


@contextlib.asynccontextmanager
async def running(
    app: Workhorse, queues: Sequence[str], concurrency: int = 4, **options: Any
) -> AsyncIterator[Worker]:
    w = app.worker(queues=list(queues), concurrency=concurrency, shutdown_grace=1.0, **options)
    t = asyncio.create_task(w.run())
    try:
        yield w
    finally:
        w.stop()
        done, _ = await asyncio.wait([t], timeout=STOP)
        if not done:
            stuck = _stacks()
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
            pytest.fail(f"the worker did not stop within {STOP:g}s of stop(); tasks:\n{stuck}")
        t.result()  # a worker that crashed fails the test


def _stacks() -> str:
    out = io.StringIO()
    for pending in asyncio.all_tasks():
        if pending is not asyncio.current_task():
            pending.print_stack(file=out)
    return out.getvalue()


async def test_run_returns_the_result(app: Workhorse) -> None:
    @task(app, queue="q")
    async def add(data: dict[str, int]) -> int:
        return data["a"] + data["b"]

    async with running(app, ["q"]):
        assert await app.run("add", {"a": 2, "b": 3}, timeout=RUN) == 5
        assert await add.run({"a": 1, "b": 1}, timeout=RUN) == 2


async def test_sync_task_and_context(app: Workhorse) -> None:
    @task(app, queue="q")
    def shout(data: str, ctx: JobContext) -> str:
        ctx.log("shouting", size=len(data))
        return f"{data.upper()}! (attempt {ctx.attempt})"

    async with running(app, ["q"]):
        handle = await shout.enqueue("hey")
        assert await handle.result(timeout=RUN) == "HEY! (attempt 1)"
    job = await handle.get()
    assert job is not None
    assert job.state is JobState.COMPLETED
    assert [line["message"] for line in job.logs] == ["shouting"]
    assert job.logs[0]["fields"] == {"size": 3}


async def test_failure_raises_job_failed_with_the_remote_error(app: Workhorse) -> None:
    @task(app, queue="q")
    async def boom(data: dict[str, Any]) -> None:
        raise ValueError(f"bad value {data['v']}")

    async with running(app, ["q"]):
        with pytest.raises(JobFailed) as caught:
            await app.run(boom, {"v": 7}, timeout=RUN)

    err = caught.value
    assert err.type == "ValueError"
    assert err.message == "bad value 7"
    assert "Traceback" in err.traceback
    assert "in boom" in err.traceback
    assert "ValueError: bad value 7" in err.traceback
    assert err.job is not None
    assert (err.job.state, err.job.attempts) == (JobState.FAILED, 1)


async def test_retries_with_backoff_then_success(app: Workhorse) -> None:
    calls: list[int] = []

    @task(app, queue="q", retries=3, backoff=0.1)
    async def flaky(ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"try {ctx.attempt}")
        return "finally"

    async with running(app, ["q"]):
        handle = await flaky.enqueue()
        assert await handle.result(timeout=RUN) == "finally"

    assert calls == [1, 2, 3]
    job = await handle.get()
    assert job is not None
    assert job.attempts == 3
    events = await settled_log(app.backend, handle.id)
    retrying = [e for e in events if e.type == "job.retrying"]
    assert len(retrying) == 2
    assert all(e.data["delay"] == pytest.approx(0.1) for e in retrying)
    # The backoff is applied on the backend's clock: each retry starts no earlier.
    starts = [e.at for e in events if e.type == "job.started"]
    retried = [e.at for e in retrying]
    assert len(starts) == 3
    assert starts[1] - retried[0] >= 0.09
    assert starts[2] - retried[1] >= 0.09


async def test_a_runs_wait_bounds_its_attempt_never_beyond_the_tasks_own(app: Workhorse) -> None:
    """run(timeout=...) is also the attempt's limit, unless the task's own is shorter or
    the call sets the attempt's timeout itself."""

    @task(app, queue="q")
    async def limit(ctx: JobContext) -> float | None:
        return ctx.lease.timeout

    @task(app, queue="q", timeout=2)
    async def short(ctx: JobContext) -> float | None:
        return ctx.lease.timeout

    async with running(app, ["q"]):
        assert await limit.run(timeout=RUN) == RUN
        assert await app.run(limit, timeout=RUN) == RUN
        assert await app.run(limit, timeout=RUN, priority=1) == RUN
        assert await short.run(timeout=RUN) == 2
        assert await limit.options(timeout=3).run(timeout=RUN) == 3
        assert await limit.run() is None


async def test_retries_spent_fail(app: Workhorse) -> None:
    @task(app, queue="q", retries=1, backoff=0)
    async def never(ctx: JobContext) -> None:
        raise RuntimeError(f"attempt {ctx.attempt}")

    async with running(app, ["q"]):
        with pytest.raises(JobFailed) as caught:
            await never.run(timeout=RUN)
    assert caught.value.message == "attempt 2"
    assert caught.value.job is not None
    assert caught.value.job.attempts == 2


async def test_enqueue_many(app: Workhorse) -> None:
    @task(app, queue="q")
    async def square(n: int) -> int:
        return n * n

    handles = await square.enqueue_many(range(6))
    assert len({h.id for h in handles}) == 6
    assert all(h.created and h.state is JobState.QUEUED for h in handles)
    async with running(app, ["q"]):
        results = [await h.result(timeout=RUN) for h in handles]
    assert results == [0, 1, 4, 9, 16, 25]
    assert (await app.counts(["q"]))["q"]["completed"] == 6


async def test_enqueue_many_ids_ascend_in_the_items_order(app: Workhorse) -> None:
    @task(app, queue="q")
    async def echo(n: int) -> int:
        return n

    for options in ({}, {"priority": 3}):
        handles = await echo.enqueue_many(range(300), **options)
        ids = [h.id for h in handles]
        assert ids == sorted(ids) and len(set(ids)) == 300
        for k in (0, 150, 299):
            job = await app.get_job(ids[k])
            assert job is not None and job.data == k


async def test_pause_and_resume(app: Workhorse) -> None:
    @task(app, queue="q")
    async def ping() -> str:
        return "pong"

    await app.pause("q")
    assert await app.is_paused("q")
    handle = await ping.enqueue()
    async with running(app, ["q"]):
        await asyncio.sleep(0.3)  # several poll intervals of a worker that must not claim
        job = await handle.get()
        assert job is not None
        assert job.state is JobState.QUEUED
        await app.resume("q")
        assert not await app.is_paused("q")
        assert await handle.result(timeout=RUN) == "pong"


async def test_cancel_a_queued_job_wakes_its_run(app: Workhorse) -> None:
    @task(app, queue="nobody-consumes")
    async def idle() -> None:
        return None

    waiting = asyncio.create_task(app.run(idle, timeout=RUN))

    async def enqueued() -> list[Any]:
        return await app.jobs(task="idle")

    (job,) = await eventually(enqueued, "run() to enqueue its job")
    assert await app.cancel(job.id) is JobState.CANCELLED
    with pytest.raises(JobCancelled):
        async with asyncio.timeout(RUN):
            await waiting


async def test_cancel_a_running_job(app: Workhorse) -> None:
    started = asyncio.Event()

    @task(app, queue="q")
    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    async with running(app, ["q"], lease=0.3):
        handle = await slow.enqueue()
        async with asyncio.timeout(RUN):
            await started.wait()
        assert await handle.cancel() is JobState.ACTIVE
        with pytest.raises(JobCancelled):
            await handle.result(timeout=RUN)
    job = await handle.get()
    assert job is not None
    assert job.state is JobState.CANCELLED


async def test_priority_and_delay_through_the_client(app: Workhorse) -> None:
    order: list[str] = []

    @task(app, queue="q")
    async def note(name: str) -> None:
        order.append(name)

    await note.options(priority=1).enqueue("low")
    await note.options(priority=9).enqueue("high")
    later = await note.options(delay=0.3).enqueue("later")
    assert later.state is JobState.SCHEDULED
    async with running(app, ["q"], concurrency=1):
        await later.result(timeout=RUN)
    assert order == ["high", "low", "later"]
