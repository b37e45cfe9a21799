"""What a worker claims and when: concurrency per queue, priority order, delayed jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from workhorse import JobState, Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.testing import FakeClock

from .worker_helpers import running, wait_until


async def test_concurrency_per_queue_is_never_exceeded(app: Workhorse) -> None:
    now = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}

    async def body(queue: str) -> None:
        now[queue] += 1
        peak[queue] = max(peak[queue], now[queue])
        await asyncio.sleep(0.03)
        now[queue] -= 1

    @app.task(queue="a")
    async def on_a() -> None:
        await body("a")

    @app.task(queue="b")
    async def on_b() -> None:
        await body("b")

    handles = [*await on_a.enqueue_many([None] * 12), *await on_b.enqueue_many([None] * 12)]
    async with running(app, queues={"a": 2, "b": 3}):
        for h in handles:
            assert (await app.wait(h.id, 10)).state is JobState.COMPLETED
    assert peak == {"a": 2, "b": 3}  # reached, never passed


async def test_queues_option_as_a_string_with_counts(app: Workhorse) -> None:
    running_now = 0
    peak = 0

    @app.task(queue="mail")
    async def send() -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await asyncio.sleep(0.02)
        running_now -= 1

    handles = await send.enqueue_many([None] * 8)
    async with running(app, queues="mail:4"):
        for h in handles:
            await app.wait(h.id, 10)
    assert peak == 4


async def test_priority_high_first_then_first_in_first_out(app: Workhorse) -> None:
    order: list[str] = []

    @app.task
    async def record(name: str) -> None:
        order.append(name)

    for name, priority in [
        ("low1", 0),
        ("high1", 10),
        ("mid", 5),
        ("low2", 0),
        ("high2", 10),
        ("neg", -1),
    ]:
        await record.options(priority=priority).enqueue(name)
    async with running(app, queues=["default"], concurrency=1):
        await wait_until(lambda: len(order) == 6, what="six jobs")
    assert order == ["high1", "high2", "mid", "low1", "low2", "neg"]


async def test_delayed_job_runs_only_when_due(app: Workhorse, clock: FakeClock) -> None:
    ran: list[float] = []

    @app.task
    async def later() -> None:
        ran.append(clock())

    handle = await later.options(delay=60).enqueue()
    assert handle.state is JobState.SCHEDULED
    async with running(app):
        await asyncio.sleep(0.2)  # several polls
        assert ran == []
        clock.advance(59)
        await asyncio.sleep(0.2)
        assert ran == []
        due = clock.advance(1)
        job = await app.wait(handle.id, 5)
    assert job.state is JobState.COMPLETED
    assert ran == [due]


async def test_worker_consumes_only_its_queues(memory: MemoryBackend) -> None:
    app = Workhorse(backend=memory, poll_interval=0.05, known_queues=["elsewhere"])

    @app.task(queue="elsewhere")  # another worker runs it
    async def other() -> None: ...

    @app.task
    async def mine() -> None: ...

    theirs = await other.enqueue()
    async with running(app, queues=["default"]):
        await mine.run(timeout=5)
    job = await app.get_job(theirs.id)
    assert job is not None
    assert job.state is JobState.QUEUED
    assert job.attempts == 0
    await app.close()


async def test_burst_worker_stops_when_the_queues_are_empty(app: Workhorse) -> None:
    done = 0

    @app.task
    async def work() -> None:
        nonlocal done
        done += 1

    await work.enqueue_many([None] * 5)
    worker = app.worker(queues=["default"], burst=True, poll_interval=0.05)
    await asyncio.wait_for(worker.run(), 5)
    assert done == 5
    assert worker.processed == 5


async def test_burst_worker_with_several_queues_runs_everything(tmp_path: Path) -> None:
    # On SQLite a claim really waits (on the store's thread): while one queue's consumer
    # is between a finished job and its next claim nothing runs, and an idle queue's
    # consumer must not take that moment for the end of the work.
    pytest.importorskip("workhorse.backends.sqlite")
    app = Workhorse(f"sqlite:///{tmp_path / 'burst.db'}")
    done = 0

    @app.task(queue="busy")
    async def work() -> None:
        nonlocal done
        done += 1

    async with app:
        await work.enqueue_many([None] * 300)
        worker = app.worker(queues={"busy": 1, "priority": 1}, burst=True, poll_interval=0.05)
        await asyncio.wait_for(worker.run(), 30)
        assert done == 300
        counts = await app.counts(["busy"])
    assert counts["busy"][JobState.COMPLETED] == 300
