"""Jobs claimed ahead of a free slot (prefetch), through a real worker on each backend: the
concurrency bound still holds, a job waiting for a slot keeps its lease, and a stopping
worker puts the jobs it had not started back in their queue at once."""

from __future__ import annotations

import asyncio

from workhorse import JobState, Workhorse

from .support import eventually
from .test_client import running, task

HOLD_LEASE = 0.6  # seconds; the first job holds its slot for several of them


async def test_a_worker_claiming_ahead_runs_at_most_its_concurrency_and_each_job_once(
    app: Workhorse,
) -> None:
    now = 0
    most = 0
    ran: list[int] = []

    @task(app, queue="q")
    async def short(n: int) -> None:
        nonlocal now, most
        now += 1
        most = max(most, now)
        await asyncio.sleep(0.001 + (n % 3) * 0.001)
        ran.append(n)
        now -= 1

    handles = await app.enqueue_many(short, list(range(300)))
    async with running(app, ["q"], concurrency=5, prefetch=3):
        jobs = [await app.wait(h.id, 30) for h in handles]
    assert all(j.state is JobState.COMPLETED for j in jobs)
    assert sorted(ran) == list(range(300))
    assert most <= 5


async def _held(app: Workhorse) -> tuple[asyncio.Event, list[int], list[str]]:
    """Three jobs on a one-slot worker that claims two ahead: the first holds the slot."""
    release = asyncio.Event()
    started: list[int] = []

    @task(app, queue="q")
    async def hold(n: int) -> None:
        started.append(n)
        if n == 0:
            await release.wait()

    ids = [(await app.enqueue(hold, n)).id for n in range(3)]
    return release, started, ids


async def _active(app: Workhorse, ids: list[str]) -> bool:
    jobs = [await app.get_job(i) for i in ids]
    return all(j is not None and j.state is JobState.ACTIVE for j in jobs)


async def test_jobs_claimed_ahead_keep_their_leases_while_they_wait(app: Workhorse) -> None:
    release, started, ids = await _held(app)
    async with running(app, ["q"], concurrency=1, prefetch=2, lease=HOLD_LEASE):
        await eventually(lambda: _active(app, ids), "all three jobs claimed")
        await asyncio.sleep(HOLD_LEASE * 3)  # three leases: renewed, or reclaimed by now
        assert started == [0]  # one slot: the others wait
        assert await _active(app, ids)
        release.set()
        jobs = [await app.wait(i, 10) for i in ids]
    assert [j.state for j in jobs] == [JobState.COMPLETED] * 3
    assert [j.stalls for j in jobs] == [0, 0, 0]
    assert started == [0, 1, 2]


async def test_a_stopping_worker_puts_the_jobs_it_had_not_started_back_at_once(
    app: Workhorse,
) -> None:
    release, started, ids = await _held(app)
    async with running(app, ["q"], concurrency=1, prefetch=2) as worker:
        await eventually(lambda: _active(app, ids), "all three jobs claimed")
        worker.stop()  # the first job still runs within the grace

        async def back() -> bool:
            jobs = [await app.get_job(i) for i in ids[1:]]
            return all(j is not None and j.state is JobState.QUEUED for j in jobs)

        await eventually(back, "the two jobs not started back in the queue", timeout=0.9)
        release.set()
    first, *rest = [await app.get_job(i) for i in ids]
    assert first is not None and first.state is JobState.COMPLETED
    assert started == [0]
    assert all(j is not None and j.attempts == 0 and j.stalls == 0 for j in rest)
