"""Wake-ups: wait_for_jobs and wait_finished, across backend objects."""

from __future__ import annotations

import asyncio
import time

from workhorse.backends import Backend
from workhorse.job import JobState

from .support import claim_one, completed, enqueue_one, failed, new

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
