"""Attempts that go wrong: timeouts, SystemExit, bad results, bad payloads, unknown tasks.
In every case the job ends with the reason and the worker goes on with the next job."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from workhorse import JobContext, JobFailed, JobState, Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.testing import FakeClock

from .worker_helpers import running, wait_until


def test_a_task_without_a_timeout_gets_the_job_timeout_setting() -> None:
    """At the defaults an attempt is bounded: 300 s, arq's default."""
    assert Workhorse("memory://").settings.job_timeout == 300.0


async def test_a_hung_async_job_ends_at_the_job_timeout(memory: MemoryBackend) -> None:
    app = Workhorse(backend=memory, poll_interval=0.05, job_timeout=0.3)

    @app.task
    async def hung() -> None:
        await asyncio.Event().wait()

    async with app, running(app, concurrency=1):
        handle = await hung.enqueue()
        job = await app.wait(handle.id, 10)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error["message"] == "timed out after 0.3s"


async def test_async_timeout_fails_the_attempt_and_frees_the_slot(app: Workhorse) -> None:
    cancelled = asyncio.Event()

    @app.task(timeout=0.2)
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @app.task
    async def quick(n: int) -> int:
        return n * 2

    async with running(app, concurrency=1):
        started = time.monotonic()
        with_timeout = await slow.enqueue()
        assert await quick.run(21, timeout=5) == 42  # the one slot came back
        job = await app.wait(with_timeout.id, 5)
        assert time.monotonic() - started < 3

    assert cancelled.is_set()
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error["type"] == "TimeoutError"
    assert job.error["message"] == "timed out after 0.2s"
    assert job.attempts == 1


async def test_blocking_sync_handler_keeps_its_thread_but_later_jobs_run(
    app: Workhorse,
) -> None:
    release = threading.Event()

    @app.task(timeout=0.2)
    def stuck() -> str:
        release.wait(20)  # cannot be interrupted: it holds its thread past the timeout
        return "late"

    @app.task
    def sync_quick(n: int) -> int:
        return n + 1

    try:
        # One slot: the next sync jobs need a thread beside the stuck one.
        async with running(app, queues=["default"], concurrency=1):
            blocked = await stuck.enqueue()
            job = await app.wait(blocked.id, 5)
            assert job.state is JobState.FAILED
            assert job.error is not None
            assert job.error["message"] == "timed out after 0.2s"
            assert not release.is_set()  # the thread is still stuck in the handler
            for n in range(3):
                assert await sync_quick.run(n, timeout=5) == n + 1
    finally:
        release.set()


async def test_system_exit_fails_the_job_and_the_worker_keeps_going(app: Workhorse) -> None:
    @app.task
    async def quits() -> None:
        raise SystemExit(3)

    @app.task
    def sync_quits() -> None:
        raise SystemExit("bye")

    @app.task
    async def after() -> str:
        return "still here"

    async with running(app, concurrency=1) as worker:
        a = await quits.enqueue()
        b = await sync_quits.enqueue()
        assert await after.run(timeout=5) == "still here"
        ja, jb = await app.wait(a.id, 5), await app.wait(b.id, 5)
        assert worker.active == 0

    for job, message in ((ja, "3"), (jb, "bye")):
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert job.error["type"] == "SystemExit"
        assert job.error["message"] == message


async def test_result_that_is_not_json_fails_without_retry(app: Workhorse) -> None:
    @app.task(retries=3, backoff=0)
    async def returns_a_set() -> Any:
        return {1, 2}

    async with running(app):
        handle = await returns_a_set.enqueue()
        job = await app.wait(handle.id, 5)

    assert job.state is JobState.FAILED
    assert job.attempts == 1  # the same result cannot encode on a retry either
    assert job.error is not None
    assert "not JSON-serialisable" in job.error["message"]
    assert "returns_a_set" in job.error["message"]


async def test_result_holding_nan_fails_instead_of_storing_null(app: Workhorse) -> None:
    @app.task(retries=3, backoff=0)
    async def ratio() -> Any:
        return {"ratio": float("nan")}

    async with running(app):
        handle = await ratio.enqueue()
        job = await app.wait(handle.id, 5)

    assert job.state is JobState.FAILED
    assert job.attempts == 1
    assert job.error is not None
    assert "NaN" in job.error["message"] or "nan" in job.error["message"]
    assert "['ratio']" in job.error["message"]


class Strict(BaseModel):
    count: int


async def test_payload_refused_by_the_workers_model_fails_without_retry(
    memory: MemoryBackend,
) -> None:
    # The producer's version of the task takes anything; the worker's wants an int.
    producer = Workhorse(backend=memory, poll_interval=0.05)
    worker_app = Workhorse(backend=memory, poll_interval=0.05)
    ran = []

    @producer.task(name="typed", retries=3)
    async def loose(data: Any) -> None: ...

    @worker_app.task(name="typed")
    async def strict(data: Strict) -> None:
        ran.append(data)

    handle = await producer.enqueue("typed", {"count": "many"})
    async with running(worker_app):
        job = await producer.wait(handle.id, 5)

    assert ran == []
    assert job.state is JobState.FAILED
    assert job.attempts == 1
    assert job.error is not None
    assert job.error["type"] == "workhorse.errors.PayloadError"
    assert "does not validate for task 'typed'" in job.error["message"]
    assert "count" in job.error["message"]


async def test_unknown_task_goes_back_without_spending_an_attempt_then_fails(
    memory: MemoryBackend,
    clock: FakeClock,
) -> None:
    producer = Workhorse(backend=memory)
    old_worker = Workhorse(
        backend=memory, poll_interval=0.05, unknown_task_delay=30, unknown_task_window=100
    )

    @producer.task
    async def brand_new(data: Any) -> None: ...

    @old_worker.task
    async def known() -> None: ...

    handle = await brand_new.enqueue({"x": 1})
    async with running(old_worker):

        async def put_back() -> bool:
            job = await memory.get(handle.id)
            return job is not None and job.state is JobState.SCHEDULED

        await wait_until(put_back, what="the unknown job to be put back")
        job = await memory.get(handle.id)
        assert job is not None
        assert job.attempts == 0  # not spent: a newer worker may know the task
        assert job.run_at.timestamp() == pytest.approx(clock() + 30, abs=1e-5)
        assert job.error is not None
        assert job.error["type"] == "UnknownTask"
        assert "'brand_new'" in job.error["message"]
        assert "known" in job.error["message"]  # what this worker does know

        clock.advance(30)  # due again, 30 s old: still inside the window
        await wait_until(
            lambda: _run_at_moved(memory, handle.id, clock() + 30), what="the second put-back"
        )
        assert (await memory.get(handle.id)).attempts == 0  # type: ignore[union-attr]

        clock.advance(80)  # 110 s old: past the window
        job = await producer.wait(handle.id, 5)

    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "gave up after 100s" in job.error["message"]
    assert job.attempts == 1


async def _run_at_moved(memory: MemoryBackend, job_id: str, expected: float) -> bool:
    job = await memory.get(job_id)
    assert job is not None
    return job.state is JobState.SCHEDULED and abs(job.run_at.timestamp() - expected) < 1e-5


async def test_failure_reaches_run_callers_with_the_remote_error(app: Workhorse) -> None:
    @app.task
    async def boom(data: dict[str, Any], ctx: JobContext) -> None:
        raise ValueError(f"bad value {data['v']}")

    async with running(app):
        with pytest.raises(JobFailed) as caught:
            await boom.run({"v": 7}, timeout=5)
    assert caught.value.type == "ValueError"
    assert caught.value.message == "bad value 7"
    assert "raise ValueError" in caught.value.traceback


async def test_a_handler_raising_cancelled_error_itself_fails_like_any_error(
    app: Workhorse,
) -> None:
    calls = 0

    @app.task(retries=1, backoff=0)
    async def confused() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError("raised by the task, not by a stop or a cancel")

    @app.task
    async def after() -> str:
        return "fine"

    async with running(app, concurrency=1):
        handle = await confused.enqueue()
        job = await app.wait(handle.id, 5)
        assert await after.run(timeout=5) == "fine"
    assert calls == 2  # attempts were spent, not refunded
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error["type"] == "asyncio.exceptions.CancelledError"
