"""job_events(job_id): a job's events read by its id, in order, however many other jobs'
events the log holds, and trimmed with the log."""

from __future__ import annotations

from typing import Any

from workhorse.backends import JOB_EVENTS, Backend, backend_from_url
from workhorse.backends.memory import MemoryBackend
from workhorse.job import Outcome

from .support import claim_one, completed, enqueue_one, error, new, settled_log


async def _others(backend: Backend, n: int, queue: str = "q") -> None:
    for start in range(0, n, 500):
        await backend.enqueue([new("other", queue) for _ in range(min(500, n - start))])


async def test_a_jobs_events_come_back_in_order(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new("send", "mail", max_attempts=3))
    lease = await claim_one(backend, queue="mail", worker="w1")
    await backend.update(lease, progress=40)
    await backend.finish([(lease, Outcome("retry", error=error("flaky"), delay=0))])
    lease = await claim_one(backend, queue="mail", worker="w2")
    await backend.finish([(lease, completed("ok"))])

    logged = await settled_log(backend, job_id)
    got = await backend.job_events(job_id)
    assert [e.type for e in got] == [
        "job.queued",
        "job.started",
        "job.progress",
        "job.retrying",
        "job.started",
        "job.completed",
    ]
    assert [(e.id, e.type, e.data, e.task, e.queue) for e in got] == [
        (e.id, e.type, e.data, e.task, e.queue) for e in logged
    ]
    assert all(e.job_id == job_id for e in got)
    assert await backend.job_events("0" * 32) == []


async def test_found_after_many_other_jobs_events(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new("send", "q"))
    await _others(backend, 3000)  # 3,000 events of other jobs in its queue
    await _others(backend, 500, queue="elsewhere")
    lease = await claim_one(backend, queue="q")  # the oldest: this job
    assert lease.job_id == job_id
    await _others(backend, 1000)
    await backend.finish([(lease, completed())])
    await settled_log(backend)

    got = await backend.job_events(job_id)
    assert [e.type for e in got] == ["job.queued", "job.started", "job.completed"]
    assert [e.id for e in got] == sorted(e.id for e in got)


async def test_the_newest_events_within_the_limit(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    for i in range(JOB_EVENTS + 20):
        assert await backend.update(lease, progress=i)
    await backend.finish([(lease, completed())])

    got = await backend.job_events(job_id)
    assert len(got) == JOB_EVENTS
    assert got[-1].type == "job.completed"
    assert [e.data["progress"] for e in got[:-1]] == list(range(21, JOB_EVENTS + 20))
    assert [e.id for e in got] == sorted(e.id for e in got)
    two = await backend.job_events(job_id, 2)
    assert [(e.id, e.type) for e in two] == [(e.id, e.type) for e in got[-2:]]
    assert await backend.job_events(job_id, 0) == []


def _small_log(kind: str, url: str, max_events: int) -> Backend:
    """A view of the test's store whose event log keeps about ``max_events``."""
    if kind == "memory":
        return MemoryBackend(max_events=max_events)
    return backend_from_url(f"{url}{'&' if '?' in url else '?'}max_events={max_events}")


async def test_events_trimmed_from_the_log_are_gone_by_id_too(
    backend_kind: str, store_url: str, backend: Any
) -> None:
    small = _small_log(backend_kind, store_url, 100)
    await small.open()
    try:
        job_id = await enqueue_one(small)
        await _others(small, 3000)
        sweep = getattr(small, "sweep", None)
        if sweep is not None:
            await sweep()  # PostgreSQL bounds its log in a periodic sweep
        assert await small.job_events(job_id) == []
        await small.cancel(job_id)  # a new event after the trim is found
        await settled_log(small)
        assert [e.type for e in await small.job_events(job_id)] == ["job.cancelled"]
    finally:
        if small is not backend:
            await small.close()
