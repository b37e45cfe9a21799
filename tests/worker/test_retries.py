"""Retries: the backoff moves run_at on the store's clock; max_attempts is respected and the
final record keeps the last error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workhorse import Exponential, Fixed, JobContext, JobState, Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.testing import FakeClock

from .worker_helpers import running, wait_until


async def _waits_for_retry(memory: MemoryBackend, job_id: str, attempts: int) -> bool:
    job = await memory.get(job_id)
    assert job is not None
    return job.state is JobState.SCHEDULED and job.attempts == attempts


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (Fixed(10), [10, 10, 10]),
        (Exponential(base=2, factor=3, jitter=False), [2, 6, 18]),
        (lambda attempt, error: attempt * 7 + len(str(error)), [7 + 9, 14 + 9, 21 + 9]),
    ],
    ids=["fixed", "exponential", "custom"],
)
async def test_backoff_moves_run_at_and_attempts_stop_at_max(
    app: Workhorse,
    memory: MemoryBackend,
    clock: FakeClock,
    backoff: Any,
    delays: list[float],
) -> None:
    seen: list[int] = []

    @app.task(retries=3, backoff=backoff)
    async def flaky(ctx: JobContext) -> None:
        seen.append(ctx.attempt)
        raise RuntimeError(f"attempt {ctx.attempt}")  # str(error) is 9 characters

    handle = await flaky.enqueue()
    async with running(app):
        for attempt, delay in enumerate(delays, start=1):
            await wait_until(
                lambda a=attempt: _waits_for_retry(memory, handle.id, a),
                what=f"retry after attempt {attempt}",
            )
            job = await memory.get(handle.id)
            assert job is not None
            assert job.run_at.timestamp() == pytest.approx(clock() + delay, abs=1e-5)
            assert job.error is not None
            assert job.error["message"] == f"attempt {attempt}"
            clock.advance(delay - 0.5)
            await asyncio.sleep(0.15)  # three polls
            assert seen == list(range(1, attempt + 1))  # not due yet: nothing ran early
            clock.advance(0.5)
        job = await app.wait(handle.id, 5)

    assert seen == [1, 2, 3, 4]
    assert job.state is JobState.FAILED
    assert job.attempts == job.max_attempts == 4
    assert job.error is not None
    assert job.error["type"] == "RuntimeError"
    assert job.error["message"] == "attempt 4"


async def test_a_retry_that_succeeds_completes(app: Workhorse, clock: FakeClock) -> None:
    @app.task(retries=2, backoff=5)
    async def second_time_lucky(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise ConnectionError("flaky network")
        return ctx.attempt

    handle = await second_time_lucky.enqueue()
    async with running(app):

        async def retrying() -> bool:
            job = await app.get_job(handle.id)
            return job is not None and job.state is JobState.SCHEDULED

        await wait_until(retrying, what="the first retry")
        clock.advance(5)
        assert await handle.result(timeout=5) == 2
    job = await app.get_job(handle.id)
    assert job is not None
    assert job.attempts == 2
    assert job.error is None  # a completed job does not keep the old error


async def test_per_call_retries_override_the_task(app: Workhorse) -> None:
    calls = 0

    @app.task(retries=5, backoff=0)
    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("no")

    async with running(app):
        handle = await always_fails.options(retries=1).enqueue()
        job = await app.wait(handle.id, 5)
    assert calls == 2
    assert job.state is JobState.FAILED
    assert job.attempts == 2


async def test_a_broken_backoff_still_retries_the_job(
    app: Workhorse,
    memory: MemoryBackend,
    clock: FakeClock,
) -> None:
    def broken(attempt: int, error: BaseException | None) -> float:
        raise ZeroDivisionError("backoff bug")

    @app.task(retries=1, backoff=broken)
    async def fails_once(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first")
        return ctx.attempt

    handle = await fails_once.enqueue()
    async with running(app):
        await wait_until(lambda: _waits_for_retry(memory, handle.id, 1), what="the retry")
        job = await memory.get(handle.id)
        assert job is not None
        delay = job.run_at.timestamp() - clock()
        assert 0 < delay <= 1.0  # the default backoff's first step
        clock.advance(1)
        assert await handle.result(timeout=5) == 2


async def test_an_exception_that_cannot_be_printed_still_fails_the_job(app: Workhorse) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    @app.task
    async def raises_it() -> None:
        raise Unprintable

    async with running(app):
        handle = await raises_it.enqueue()
        job = await app.wait(handle.id, 5)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error["message"].startswith("<unprintable ")
