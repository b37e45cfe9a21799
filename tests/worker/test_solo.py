"""A job that was running at two deaths of its worker runs alone: its next death (it is
most likely the cause) costs no other job a stall, and jobs keep running after it."""

from __future__ import annotations

import asyncio

from workhorse import JobState, Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.testing import FakeClock

from .worker_helpers import running


async def _stall(memory: MemoryBackend, clock: FakeClock, job_id: str, times: int) -> None:
    """``times`` deaths of a worker that held the job (its lease expired, reclaimed)."""
    for _ in range(times):
        leases = await memory.claim(["default"], "dead-worker", 1, 1.0)
        assert [x.job_id for x in leases] == [job_id]
        clock.advance(2.0)
        assert await memory.reclaim_expired() == [job_id]


async def test_a_job_that_stalled_twice_runs_with_nothing_beside_it(
    app: Workhorse, memory: MemoryBackend, clock: FakeClock
) -> None:
    now: set[str] = set()
    seen: dict[str, set[str]] = {}  # who ran beside each job, at any time

    @app.task
    async def step(name: str) -> None:
        now.add(name)
        for other in now:
            seen.setdefault(other, set()).update(now - {other})
        await asyncio.sleep(0.05)
        now.discard(name)

    suspect = await step.enqueue("suspect")
    await _stall(memory, clock, suspect.id, 2)
    # Claimed in one batch with the suspect, and after it.
    others = [await step.enqueue(f"other{i}") for i in range(9)]
    async with running(app, concurrency=4):
        jobs = [await app.wait(h.id, 10) for h in (suspect, *others)]
    assert all(job.state is JobState.COMPLETED for job in jobs)
    assert seen.get("suspect", set()) == set()
    assert not any("suspect" in beside for beside in seen.values())
    assert len(seen) >= 3  # the others still ran side by side


async def test_a_job_that_stalled_once_runs_beside_others(
    app: Workhorse, memory: MemoryBackend, clock: FakeClock
) -> None:
    release = asyncio.Event()
    started: list[str] = []

    @app.task
    async def hold(name: str) -> None:
        started.append(name)
        await release.wait()

    once = await hold.enqueue("once")
    await _stall(memory, clock, once.id, 1)
    other = await hold.enqueue("other")
    async with running(app, concurrency=4):
        for _ in range(200):
            if len(started) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(started) == ["once", "other"]  # both at once: one stall is no suspect
        release.set()
        for h in (once, other):
            assert (await app.wait(h.id, 10)).state is JobState.COMPLETED
