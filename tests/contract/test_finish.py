"""finish: completed, failed, retry (with delay, with refund), cancelled, batches."""

from __future__ import annotations

from workhorse import codec
from workhorse.backends import Backend
from workhorse.job import JobState, Lease, Outcome

from .support import (
    LONG,
    claim_one,
    completed,
    enqueue_one,
    error,
    eventually,
    failed,
    must_get,
    new,
)


async def test_completed_keeps_the_result(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    result = {"sent": True, "ids": [1, 2], "note": "naïve"}
    logs = [{"at": 1.0, "level": "info", "message": "sending"}]
    before = await backend.now()
    assert await backend.finish([(lease, completed(result, logs))]) == [True]
    after = await backend.now()

    job = await must_get(backend, job_id)
    assert job.state is JobState.COMPLETED
    assert job.finished
    assert job.result == result
    assert job.error is None
    assert job.logs == logs
    assert job.attempts == 1
    assert job.finished_at is not None
    assert before - 0.01 <= job.finished_at.timestamp() <= after + 0.01
    assert job.lease_expires_at is None
    assert await backend.claim(["q"], "w1", 10, LONG) == []


async def test_completed_with_a_null_result(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    assert await backend.finish([(lease, Outcome("completed", result=codec.dumps(None)))]) == [True]
    job = await must_get(backend, job_id)
    assert job.state is JobState.COMPLETED
    assert job.result is None


async def test_failed_keeps_the_error(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=3))
    lease = await claim_one(backend)
    err = error("bad input: ☃", "myapp.errors.BadInput")
    assert await backend.finish([(lease, Outcome("failed", error=err))]) == [True]

    job = await must_get(backend, job_id)
    assert job.state is JobState.FAILED
    assert job.error == err  # type, message and traceback kept as given
    assert job.finished_at is not None
    assert job.result is None
    assert await backend.claim(["q"], "w1", 10, LONG) == []


async def test_a_second_finish_is_refused(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    assert await backend.finish([(lease, completed(1))]) == [True]
    assert await backend.finish([(lease, failed())]) == [False]
    job = await must_get(backend, job_id)
    assert (job.state, job.result, job.error) == (JobState.COMPLETED, 1, None)


async def test_retry_with_delay_is_scheduled_then_due(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=3))
    lease = await claim_one(backend)
    err = error("flaky")
    retry = Outcome("retry", error=err, delay=0.5)
    assert await backend.finish([(lease, retry)]) == [True]

    job = await must_get(backend, job_id)
    assert job.state is JobState.SCHEDULED
    assert job.attempts == 1
    assert job.error == err  # the last attempt's error stays visible while waiting
    assert job.lease_expires_at is None
    assert job.finished_at is None
    counts = (await backend.counts(["q"]))["q"]
    assert (counts[JobState.SCHEDULED], counts[JobState.ACTIVE]) == (1, 0)
    assert await backend.claim(["q"], "w1", 10, LONG) == []

    async def due() -> list[Lease]:
        return await backend.claim(["q"], "w2", 10, LONG)

    (again,) = await eventually(due, "the retried job to become due")
    assert again.job_id == job_id
    assert again.attempts == 2
    assert again.token != lease.token


async def test_retry_without_delay_is_queued_at_once(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=2))
    lease = await claim_one(backend)
    assert await backend.finish([(lease, Outcome("retry", error=error()))]) == [True]
    assert (await must_get(backend, job_id)).state is JobState.QUEUED
    assert (await claim_one(backend)).attempts == 2


async def test_retry_with_refund_does_not_count_the_attempt(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=1))
    lease = await claim_one(backend)
    assert await backend.finish([(lease, Outcome("retry", refund=True))]) == [True]

    job = await must_get(backend, job_id)
    assert job.state is JobState.QUEUED
    assert job.attempts == 0
    again = await claim_one(backend)
    assert again.attempts == 1
    assert again.max_attempts == 1


async def test_retry_goes_behind_jobs_already_waiting(backend: Backend) -> None:
    first = await enqueue_one(backend, new(max_attempts=2))
    lease = await claim_one(backend)
    second = await enqueue_one(backend)
    assert await backend.finish([(lease, Outcome("retry", error=error()))]) == [True]
    leases = await backend.claim(["q"], "w1", 10, LONG)
    assert [x.job_id for x in leases] == [second, first]


async def test_cancelled_outcome(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    err = {"type": "Cancelled", "message": "cancelled while running", "traceback": ""}
    assert await backend.finish([(lease, Outcome("cancelled", error=err))]) == [True]
    job = await must_get(backend, job_id)
    assert job.state is JobState.CANCELLED
    assert job.finished_at is not None
    assert await backend.claim(["q"], "w1", 10, LONG) == []


async def test_batch_finish_with_accepted_and_refused_items(backend: Backend) -> None:
    reqs = [new(max_attempts=2) for _ in range(4)]
    await backend.enqueue(reqs)
    a, b, c, d = await backend.claim(["q"], "w1", 4, LONG)
    forged = Lease(
        c.job_id,
        "forged",
        c.task,
        c.queue,
        c.data,
        c.attempts,
        c.max_attempts,
        c.timeout,
        c.lease,
        c.created_at,
    )
    gone = Lease("f" * 32, "x", "t", "q", b"{}", 1, 1, None, LONG, 0.0)

    accepted = await backend.finish(
        [
            (a, completed("a")),
            (forged, completed("forged")),
            (b, failed("b failed")),
            (gone, completed()),
            (d, Outcome("retry", error=error(), delay=60)),
        ]
    )
    assert accepted == [True, False, True, False, True]
    states = [(await must_get(backend, x.job_id)).state for x in (a, b, c, d)]
    assert states == [JobState.COMPLETED, JobState.FAILED, JobState.ACTIVE, JobState.SCHEDULED]
    assert (await must_get(backend, c.job_id)).result is None
    assert await backend.finish([(c, completed("c"))]) == [True]
    assert (await must_get(backend, c.job_id)).result == "c"


async def test_finish_nothing(backend: Backend) -> None:
    assert await backend.finish([]) == []
