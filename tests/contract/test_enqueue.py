"""enqueue: one and many jobs, due times, dedup keys."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC

from workhorse import codec
from workhorse.backends import Backend
from workhorse.job import JobState, Outcome

from .support import (
    LONG,
    SHORT,
    claim_one,
    completed,
    enqueue_one,
    error,
    failed,
    must_get,
    new,
    reclaim,
)


async def test_now_is_a_real_clock(backend: Backend) -> None:
    first = await backend.now()
    assert abs(first - time.time()) < 5, "the backend's clock is far from this machine's"
    assert await backend.now() >= first


async def test_enqueue_one_stores_every_field(backend: Backend) -> None:
    payload = {"to": "a@b.c", "n": [1, 2.5, None], "text": "héllo ✓"}
    req = new("send", "mail", payload, priority=3, max_attempts=4, timeout=2.5)
    before = await backend.now()
    (res,) = await backend.enqueue([req])
    after = await backend.now()

    assert res.id == req.id
    assert res.created is True
    assert res.state is JobState.QUEUED
    job = await must_get(backend, req.id)
    assert (job.id, job.task, job.queue, job.state) == (req.id, "send", "mail", JobState.QUEUED)
    assert job.data == payload
    assert (job.priority, job.attempts, job.max_attempts, job.timeout) == (3, 0, 4, 2.5)
    assert job.created_at.tzinfo is not None
    assert job.created_at.utcoffset() == UTC.utcoffset(None)
    assert before - 0.01 <= job.created_at.timestamp() <= after + 0.01
    assert job.run_at.timestamp() <= after + 0.01
    assert job.started_at is None
    assert job.finished_at is None
    assert job.result is None
    assert job.error is None
    assert job.logs == []
    assert job.progress is None
    assert job.dedup_key is None


async def test_enqueue_gives_back_every_option_as_sent_set_or_unset(backend: Backend) -> None:
    # One batch mixing set and unset options of every kind (text, numbers, NULLs): each
    # comes back exactly (PostgreSQL packs the statement's arrays itself).
    a = new("sénd ✓", "q", {"i": 1}, priority=-7, max_attempts=9, timeout=0.25, lease=45.5,
            dedup_key="clé ✓", max_stalls=5)  # fmt: skip
    a.keep_for = 12.5
    b = new("sénd ✓", "q", {"i": 2})
    due = await backend.now() + 3600
    c = new("t", "q", {"i": 3}, at=due, delay=7.0)
    await backend.enqueue([a, b, c])
    ja, jb, jc = [await must_get(backend, j.id) for j in (a, b, c)]
    assert (ja.task, ja.priority, ja.max_attempts, ja.timeout) == ("sénd ✓", -7, 9, 0.25)
    assert (ja.dedup_key, ja.keep_for, ja.max_stalls) == ("clé ✓", 12.5, 5)
    assert (jb.timeout, jb.dedup_key, jb.keep_for, jb.priority) == (None, None, None, 0)
    assert jc.state is JobState.SCHEDULED
    assert abs(jc.run_at.timestamp() - due) < 0.01
    leases = await backend.claim(["q"], "w1", 10, LONG)
    assert [(x.job_id, x.lease) for x in leases] == [(b.id, LONG), (a.id, 45.5)]


async def test_enqueue_gives_back_options_every_job_of_the_batch_shares(backend: Backend) -> None:
    # Every option the same for each job (PostgreSQL packs such a column's value once).
    due = await backend.now() + 3600
    reqs = [new("sénd ✓", "q ✓", {"i": i}, priority=-7, max_attempts=9, timeout=0.25,
                lease=45.5, max_stalls=5, at=due) for i in range(3)]  # fmt: skip
    for req in reqs:
        req.keep_for = 12.5
    await backend.enqueue(reqs)
    for i, req in enumerate(reqs):
        job = await must_get(backend, req.id)
        assert (job.task, job.queue, job.data, job.priority) == ("sénd ✓", "q ✓", {"i": i}, -7)
        assert (job.max_attempts, job.timeout, job.keep_for, job.max_stalls) == (9, 0.25, 12.5, 5)
        assert (job.dedup_key, job.state) == (None, JobState.SCHEDULED)
        assert abs(job.run_at.timestamp() - due) < 0.01


async def test_enqueue_many_in_one_call_keeps_order(backend: Backend) -> None:
    reqs = [new("t", "q", {"i": i}) for i in range(5)]
    results = await backend.enqueue(reqs)

    assert [r.id for r in results] == [r.id for r in reqs]
    assert all(r.created and r.state is JobState.QUEUED for r in results)
    for i, req in enumerate(reqs):
        assert (await must_get(backend, req.id)).data == {"i": i}
    assert (await backend.counts(["q"]))["q"][JobState.QUEUED] == 5


async def test_enqueue_nothing(backend: Backend) -> None:
    assert await backend.enqueue([]) == []


async def test_delay_makes_a_job_scheduled_until_due(backend: Backend) -> None:
    (res,) = await backend.enqueue([new(delay=0.5)])
    assert res.state is JobState.SCHEDULED
    job = await must_get(backend, res.id)
    assert job.state is JobState.SCHEDULED
    delta = job.run_at.timestamp() - job.created_at.timestamp()
    assert 0.49 <= delta <= 0.51
    await _claim_when_due(backend, job.run_at.timestamp())


async def test_at_makes_a_job_scheduled_until_due(backend: Backend) -> None:
    due = await backend.now() + 0.5
    (res,) = await backend.enqueue([new(at=due, delay=100)])  # at wins over delay
    assert res.state is JobState.SCHEDULED
    job = await must_get(backend, res.id)
    assert abs(job.run_at.timestamp() - due) < 0.01
    await _claim_when_due(backend, due)


async def test_at_in_the_past_is_queued_at_once(backend: Backend) -> None:
    (res,) = await backend.enqueue([new(at=await backend.now() - 60)])
    assert res.state is JobState.QUEUED
    assert (await claim_one(backend)).job_id == res.id


async def _claim_when_due(backend: Backend, run_at: float) -> None:
    """Claim in a loop: never before ``run_at`` on the backend's clock, soon after it."""
    deadline = time.monotonic() + 5
    while True:
        before = await backend.now()
        leases = await backend.claim(["q"], "w1", 10, LONG)
        after = await backend.now()
        if leases:
            assert after >= run_at, f"claimed {run_at - after:.3f}s before it was due"
            assert len(leases) == 1
            return
        assert before < run_at + 0.05, "a due job was not claimed"
        assert time.monotonic() < deadline, "the scheduled job never became claimable"
        await asyncio.sleep(0.02)


async def test_dedup_key_returns_the_live_job(backend: Backend) -> None:
    first = await enqueue_one(backend, new(data={"v": 1}, dedup_key="user:1"))
    (dup,) = await backend.enqueue([new(data={"v": 2}, dedup_key="user:1")])

    assert dup.id == first
    assert dup.created is False
    assert dup.state is JobState.QUEUED
    assert (await must_get(backend, first)).data == {"v": 1}
    assert (await must_get(backend, first)).dedup_key == "user:1"
    assert (await backend.counts(["q"]))["q"][JobState.QUEUED] == 1

    other = await enqueue_one(backend, new(dedup_key="user:2"))
    assert other != first


async def test_dedup_key_is_unique_per_queue(backend: Backend) -> None:
    """The key holds within its queue: the same key in another queue is another job
    (on Redis Cluster a queue's keys share one slot; BullMQ's dedup ids are per queue)."""
    in_q = await enqueue_one(backend, new(queue="q", dedup_key="k"))
    (in_r,) = await backend.enqueue([new(queue="r", dedup_key="k")])
    assert in_r.created and in_r.id != in_q
    both = await backend.enqueue([new(queue="q", dedup_key="k"), new(queue="r", dedup_key="k")])
    assert [(r.id, r.created) for r in both] == [(in_q, False), (in_r.id, False)]
    # Ending one frees its own queue's key only.
    lease = await claim_one(backend, queue="q")
    assert await backend.finish([(lease, completed())]) == [True]
    (again_q, again_r) = await backend.enqueue(
        [new(queue="q", dedup_key="k"), new(queue="r", dedup_key="k")]
    )
    assert again_q.created and again_q.id != in_q
    assert (again_r.id, again_r.created) == (in_r.id, False)


async def test_retry_takes_the_key_back_only_if_its_queue_holds_none(backend: Backend) -> None:
    first = await enqueue_one(backend, new(queue="q", dedup_key="k"))
    lease = await claim_one(backend, queue="q")
    assert await backend.finish([(lease, failed())]) == [True]
    await enqueue_one(backend, new(queue="r", dedup_key="k"))  # another queue: no matter
    assert await backend.retry(first) is True
    assert (await must_get(backend, first)).state is JobState.QUEUED
    lease = await claim_one(backend, queue="q")
    assert await backend.finish([(lease, failed())]) == [True]
    await enqueue_one(backend, new(queue="q", dedup_key="k"))  # its own queue: refused
    assert await backend.retry(first) is False


async def test_dedup_key_within_one_batch(backend: Backend) -> None:
    a, b, c = new(dedup_key="k"), new(dedup_key="k"), new()
    results = await backend.enqueue([a, b, c])
    assert [(r.id, r.created) for r in results] == [(a.id, True), (a.id, False), (c.id, True)]
    assert await backend.get(b.id) is None


async def test_dedup_key_holds_while_active_and_scheduled(backend: Backend) -> None:
    first = await enqueue_one(backend, new(dedup_key="k"))
    await claim_one(backend)
    (dup,) = await backend.enqueue([new(dedup_key="k")])
    assert (dup.id, dup.created, dup.state) == (first, False, JobState.ACTIVE)

    later = await enqueue_one(backend, new(dedup_key="later", delay=60))
    (dup,) = await backend.enqueue([new(dedup_key="later")])
    assert (dup.id, dup.created, dup.state) == (later, False, JobState.SCHEDULED)


async def test_dedup_key_is_freed_when_the_job_completes(backend: Backend) -> None:
    first = await enqueue_one(backend, new(dedup_key="k"))
    lease = await claim_one(backend)
    assert await backend.finish([(lease, completed())]) == [True]
    (again,) = await backend.enqueue([new(dedup_key="k")])
    assert again.created is True
    assert again.id != first


async def test_dedup_key_is_freed_when_the_job_fails(backend: Backend) -> None:
    first = await enqueue_one(backend, new(dedup_key="k"))
    lease = await claim_one(backend)
    assert await backend.finish([(lease, failed())]) == [True]
    (again,) = await backend.enqueue([new(dedup_key="k")])
    assert again.created is True
    assert again.id != first


async def test_dedup_key_is_freed_when_the_job_is_cancelled(backend: Backend) -> None:
    first = await enqueue_one(backend, new(dedup_key="k"))
    assert await backend.cancel(first) is JobState.CANCELLED
    (again,) = await backend.enqueue([new(dedup_key="k")])
    assert again.created is True
    assert again.id != first


async def test_payload_bytes_round_trip_exactly(backend: Backend) -> None:
    payload = {"emoji": "🐎", "quote": "\"'\\", "nested": {"a": [True, False, None]}, "big": 2**60}
    req = new(data=payload)
    await enqueue_one(backend, req)
    lease = await claim_one(backend)
    assert lease.data == req.data
    assert codec.loads(lease.data) == payload


async def test_dedup_key_holds_through_retries_and_reclaims(backend: Backend) -> None:
    first = await enqueue_one(backend, new(dedup_key="k", max_attempts=3))
    lease = await claim_one(backend)
    await backend.finish([(lease, Outcome("retry", error=error(), delay=60))])
    (dup,) = await backend.enqueue([new(dedup_key="k")])
    assert (dup.id, dup.created, dup.state) == (first, False, JobState.SCHEDULED)

    await backend.enqueue([new(dedup_key="other", max_attempts=2)])
    lease = await claim_one(backend, lease=SHORT)  # "other": the retried job is not due
    await reclaim(backend, lease.job_id)
    (dup,) = await backend.enqueue([new(dedup_key="other")])
    assert (dup.id, dup.created, dup.state) == (lease.job_id, False, JobState.QUEUED)


async def test_dedup_key_is_freed_when_spent_stalls_fail_the_job(backend: Backend) -> None:
    first = await enqueue_one(backend, new(dedup_key="k", max_stalls=0))
    await claim_one(backend, lease=SHORT)
    await reclaim(backend, first)
    assert (await must_get(backend, first)).state is JobState.FAILED
    (again,) = await backend.enqueue([new(dedup_key="k")])
    assert again.created is True


async def test_concurrent_callers_each_get_their_own_answer(backend: Backend) -> None:
    # A web server's handlers enqueue at once: backends may share one write among them
    # (PostgreSQL's group commit), but each caller gets its own jobs' results, in its order,
    # and a dedup key shared by callers still yields one live job.
    calls = [[new(data={"c": c, "i": i}) for i in range(1 + c % 3)] for c in range(60)]
    keyed = [[new(data={"c": c}, dedup_key="shared")] for c in range(20)]
    got = await asyncio.gather(*(backend.enqueue(jobs) for jobs in calls + keyed))
    for jobs, results in zip(calls, got[: len(calls)], strict=True):
        assert [(r.id, r.created) for r in results] == [(j.id, True) for j in jobs]
    holders = {r.id for results in got[len(calls) :] for r in results}
    assert len(holders) == 1
    assert sum(r.created for results in got[len(calls) :] for r in results) == 1
    queued = (await backend.counts(["q"]))["q"][JobState.QUEUED]
    assert queued == sum(len(jobs) for jobs in calls) + 1
    for jobs in calls:
        for j in jobs:
            assert (await must_get(backend, j.id)).data == codec.loads(j.data)
