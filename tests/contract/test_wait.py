"""Wake-ups: wait_for_jobs and wait_finished, across backend objects."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from workhorse.backends import Backend
from workhorse.job import JobState, Lease

from .support import claim_one, completed, enqueue_one, failed, must_get, new, reclaim

PROMPT = 2.0  # "promptly": far below the wait's own timeout, generous for a loaded machine


async def test_wait_for_jobs_wakes_on_an_enqueue_elsewhere(backend: Backend, peer: Backend) -> None:
    waiting = asyncio.create_task(backend.wait_for_jobs(["q"], 10.0))
    await asyncio.sleep(0.1)  # let the waiter start listening
    assert not waiting.done(), "wait_for_jobs returned with nothing to claim"
    started = time.monotonic()
    await enqueue_one(peer)
    async with asyncio.timeout(PROMPT + 1):
        await waiting
    assert time.monotonic() - started < PROMPT
    assert len(await backend.claim(["q"], "w1", 10, 30)) == 1


async def test_wait_for_jobs_times_out_when_nothing_comes(backend: Backend, peer: Backend) -> None:
    await enqueue_one(peer, new(queue="elsewhere"))
    started = time.monotonic()
    await backend.wait_for_jobs(["q"], 0.3)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < PROMPT


async def test_wait_for_jobs_returns_at_once_when_work_is_ready(backend: Backend) -> None:
    await enqueue_one(backend)
    started = time.monotonic()
    await backend.wait_for_jobs(["q"], 10.0)
    assert time.monotonic() - started < PROMPT


async def test_wait_finished_returns_the_finished_job(backend: Backend, peer: Backend) -> None:
    job_id = await enqueue_one(backend)
    other = await enqueue_one(backend)
    waiting = asyncio.create_task(backend.wait_finished([job_id, other], 10.0))
    await asyncio.sleep(0.1)
    assert not waiting.done(), "wait_finished returned before any job finished"

    started = time.monotonic()
    lease = await claim_one(peer)
    assert lease.job_id == job_id
    await peer.finish([(lease, completed({"ok": True}))])
    async with asyncio.timeout(PROMPT + 1):
        done = await waiting
    assert time.monotonic() - started < PROMPT
    assert [j.id for j in done] == [job_id]
    assert done[0].state is JobState.COMPLETED
    assert done[0].result == {"ok": True}


async def test_wait_finished_returns_at_once_for_finished_jobs(backend: Backend) -> None:
    a = await enqueue_one(backend)
    b = await enqueue_one(backend)
    await enqueue_one(backend)
    for _ in range(2):
        lease = await claim_one(backend)
        await backend.finish([(lease, failed() if lease.job_id == b else completed())])
    started = time.monotonic()
    done = await backend.wait_finished([a, b], 10.0)
    assert time.monotonic() - started < PROMPT
    assert {(j.id, j.state) for j in done} == {(a, JobState.COMPLETED), (b, JobState.FAILED)}


async def test_wait_finished_times_out_empty(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    started = time.monotonic()
    assert await backend.wait_finished([job_id, "0" * 32], 0.3) == []
    assert 0.25 <= time.monotonic() - started < PROMPT


async def test_wait_finished_sees_a_cancel(backend: Backend, peer: Backend) -> None:
    job_id = await enqueue_one(backend)
    waiting = asyncio.create_task(backend.wait_finished([job_id], 10.0))
    await asyncio.sleep(0.1)
    await peer.cancel(job_id)
    async with asyncio.timeout(PROMPT + 1):
        done = await waiting
    assert [(j.id, j.state) for j in done] == [(job_id, JobState.CANCELLED)]


async def test_a_job_enqueued_watched_is_heard_when_it_finishes(
    backend: Backend, peer: Backend
) -> None:
    # app.run() enqueues with enqueue_watched and waits next: the wait must hear the
    # finish without looking first, whether it comes during the wait or before it.
    await backend.wait_finished(["not-a-job"], 0.05)  # a waiting app is listening already
    [during] = await backend.enqueue_watched([new()])
    [before] = await backend.enqueue_watched([new()])
    waiting = asyncio.create_task(backend.wait_finished([during.id], 10.0))
    await asyncio.sleep(0.1)
    assert not waiting.done(), "wait_finished returned before the job finished"
    started = time.monotonic()
    first = await claim_one(peer)
    second = await claim_one(peer)
    assert [first.job_id, second.job_id] == [during.id, before.id]
    await peer.finish([(first, completed(1)), (second, completed(2))])
    async with asyncio.timeout(PROMPT + 1):
        done = await waiting
    assert [(j.id, j.result) for j in done] == [(during.id, 1)]
    async with asyncio.timeout(PROMPT + 1):
        done = await backend.wait_finished([before.id], 10.0)
    assert time.monotonic() - started < PROMPT
    assert [(j.id, j.result) for j in done] == [(before.id, 2)]


async def _woken(
    backend: Backend, waiting: asyncio.Task[list[Lease] | None], lease: float = 30, limit: int = 10
) -> list[Lease]:
    """What a wait_claim gave; a store that claims nothing with it is claimed from next."""
    async with asyncio.timeout(PROMPT + 1):
        leases = await waiting
    return await backend.claim(["q"], "w1", limit, lease) if leases is None else leases


async def test_wait_claim_wakes_on_an_enqueue_with_the_job_leased_once(
    backend: Backend, peer: Backend
) -> None:
    waiting = asyncio.create_task(backend.wait_claim("q", "w1", 10, 30, 10.0))
    await asyncio.sleep(0.1)  # let the waiter start listening
    assert not waiting.done(), "wait_claim returned with nothing to claim"
    job_id = await enqueue_one(peer)
    leases = await _woken(backend, waiting)
    assert [lease.job_id for lease in leases] == [job_id]
    assert await peer.claim(["q"], "w2", 10, 30) == []  # leased once, to w1
    job = await must_get(peer, job_id)
    assert (job.state, job.attempts) == (JobState.ACTIVE, 1)
    assert await backend.finish([(leases[0], completed(7))]) == [True]


async def test_a_wait_claim_after_one_that_gave_jobs_ends_at_once_while_a_job_is_due(
    backend: Backend, peer: Backend
) -> None:
    """A worker waits again right after a wait_claim gave it jobs, with no claim between:
    that wait ends at once for a job the last claim's limit left, and for one enqueued
    since; with neither, it waits."""
    waiting = asyncio.create_task(backend.wait_claim("q", "w1", 1, 30, 10.0))
    await asyncio.sleep(0.1)  # let the waiter start listening
    (a,) = await _woken_after(backend, waiting, peer.enqueue([new(), new()]))
    (b,) = await _woken(
        backend, asyncio.create_task(backend.wait_claim("q", "w1", 1, 30, 10.0)), limit=1
    )
    waiting = asyncio.create_task(backend.wait_claim("q", "w1", 10, 30, 10.0))
    await asyncio.sleep(0.1)
    assert not waiting.done(), "wait_claim returned with nothing to claim"
    (c,) = await _woken_after(backend, waiting, enqueue_one(peer))
    assert len({a.job_id, b.job_id, c.job_id}) == 3


async def _woken_after(
    backend: Backend, waiting: asyncio.Task[list[Lease] | None], enqueue: Awaitable[Any]
) -> list[Lease]:
    """What a waiting wait_claim (limit 1) gave once ``enqueue`` was done, promptly."""
    started = time.monotonic()
    await enqueue
    leases = await _woken(backend, waiting, limit=1)
    assert time.monotonic() - started < PROMPT
    return leases


async def test_a_job_a_wait_claimed_for_a_worker_that_died_is_claimed_again(
    backend: Backend, peer: Backend
) -> None:
    """The wait's claim is a lease like any other: a worker that dies holding it (here:
    never finishes nor renews) loses the job to the next claim once the lease expires."""
    waiting = asyncio.create_task(backend.wait_claim("q", "w1", 10, 0.3, 10.0))
    await asyncio.sleep(0.1)
    job_id = await enqueue_one(peer)
    assert [lease.job_id for lease in await _woken(backend, waiting, 0.3)] == [job_id]
    await reclaim(peer, job_id)
    (again,) = await peer.claim(["q"], "w2", 10, 30)
    assert again.job_id == job_id


async def test_a_cancelled_wait_claim_leaves_no_job_leased(backend: Backend, peer: Backend) -> None:
    """A worker stopping or pausing cancels its wait; a job the wait's claim may already
    have taken goes back to its queue at once, its attempt not counted."""
    waiting = asyncio.create_task(backend.wait_claim("q", "w1", 10, 3600, 10.0))
    await asyncio.sleep(0.1)
    job_id = await enqueue_one(peer)
    waiting.cancel()  # at once: the store may be running the claim right now
    got = None
    with contextlib.suppress(asyncio.CancelledError):
        got = await waiting
    if got:  # it ended before the cancel came: its worker holds the job, and runs it
        assert [lease.job_id for lease in got] == [job_id]
        return
    (lease,) = await peer.claim(["q"], "w2", 10, 30)  # not leased to w1 for an hour
    assert lease.job_id == job_id
    assert lease.attempts == 1


async def test_jobs_a_held_wait_claimed_go_to_another_worker_uncounted(
    backend: Backend, peer: Backend, backend_factory: Callable[[], Backend]
) -> None:
    """A store that runs the wait's claim itself runs it whether or not the worker is
    there to read the reply (stopped, cut off, its loop held). A job so leased and never
    taken up goes to the next worker once that lease expires, with no stall and its
    attempt not counted; the held worker, running again, does not run it."""
    if type(backend).wait_claim is Backend.wait_claim:
        pytest.skip("this store waits, then the worker claims: nothing is handed over")
    if not backend.capabilities.multi_process:
        pytest.skip("this store claims on the waiting loop's own step: nothing is handed over")
    waiting = asyncio.create_task(backend.wait_claim("q", "w1", 10, 0.3, 10.0))
    await asyncio.sleep(0.1)  # let the waiter start listening
    enqueued: list[str] = []
    reclaimed = threading.Event()

    async def elsewhere() -> None:  # other processes, while this one is held
        other = backend_factory()
        await other.open()
        try:
            enqueued.append(job_id := await enqueue_one(other))
            while job_id not in await other.reclaim_expired():
                await asyncio.sleep(0.05)
        finally:
            await other.close()
        reclaimed.set()

    threading.Thread(target=asyncio.run, args=(elsewhere(),), daemon=True).start()
    # Holds this loop, as a stopped process is held, until the lease was reclaimed.
    assert reclaimed.wait(30), "the job the wait claimed was never reclaimed"
    (job_id,) = enqueued
    async with asyncio.timeout(PROMPT + 1):
        leases = await waiting
    assert not leases, "the held worker was given a job another worker may run by now"
    job = await must_get(peer, job_id)
    assert (job.state, job.attempts, job.stalls) == (JobState.QUEUED, 0, 0)
    (again,) = await peer.claim(["q"], "w2", 10, 30)
    assert (again.job_id, again.attempts) == (job_id, 1)
