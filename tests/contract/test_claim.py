"""claim: order, limits, queues, pauses, attempts and what a lease carries."""

from __future__ import annotations

import asyncio

from workhorse.backends import Backend
from workhorse.job import JobState

from .support import LONG, claim_one, enqueue_one, must_get, new


async def test_priority_high_first(backend: Backend) -> None:
    low, high, mid = new(priority=0), new(priority=10), new(priority=5)
    neg = new(priority=-3)
    await backend.enqueue([low, neg, high, mid])
    leases = await backend.claim(["q"], "w1", 10, LONG)
    assert [x.job_id for x in leases] == [high.id, mid.id, low.id, neg.id]


async def test_fifo_among_equal_priority_across_calls(backend: Backend) -> None:
    ids = []
    for i in range(5):
        ids.append(await enqueue_one(backend, new(data={"i": i})))
        await asyncio.sleep(0.002)  # distinct enqueue times
    leases = await backend.claim(["q"], "w1", 10, LONG)
    assert [x.job_id for x in leases] == ids


async def test_fifo_within_one_batch(backend: Backend) -> None:
    reqs = [new(data={"i": i}) for i in range(20)]
    await backend.enqueue(reqs)
    got: list[str] = []
    while leases := await backend.claim(["q"], "w1", 3, LONG):
        got.extend(x.job_id for x in leases)
    assert got == [r.id for r in reqs]


async def test_priority_beats_age(backend: Backend) -> None:
    old = await enqueue_one(backend, new(priority=1))
    await asyncio.sleep(0.002)
    young = await enqueue_one(backend, new(priority=2))
    assert [x.job_id for x in await backend.claim(["q"], "w1", 2, LONG)] == [young, old]


async def test_limit_is_respected(backend: Backend) -> None:
    await backend.enqueue([new() for _ in range(5)])
    assert len(await backend.claim(["q"], "w1", 2, LONG)) == 2
    assert len(await backend.claim(["q"], "w1", 2, LONG)) == 2
    assert len(await backend.claim(["q"], "w1", 2, LONG)) == 1
    assert await backend.claim(["q"], "w1", 2, LONG) == []


async def test_empty_store_claims_nothing(backend: Backend) -> None:
    assert await backend.claim(["q", "other"], "w1", 10, LONG) == []


async def test_only_the_named_queues(backend: Backend) -> None:
    a, b, c = new(queue="a"), new(queue="b"), new(queue="c")
    await backend.enqueue([a, b, c])
    assert [x.job_id for x in await backend.claim(["b"], "w1", 10, LONG)] == [b.id]
    got = {x.job_id for x in await backend.claim(["a", "c"], "w1", 10, LONG)}
    assert got == {a.id, c.id}
    assert await backend.claim(["a", "b", "c"], "w1", 10, LONG) == []


async def test_limit_across_several_queues(backend: Backend) -> None:
    await backend.enqueue([new(queue="a") for _ in range(3)] + [new(queue="b") for _ in range(3)])
    first = await backend.claim(["a", "b"], "w1", 4, LONG)
    assert len(first) == 4
    rest = await backend.claim(["a", "b"], "w1", 4, LONG)
    assert len(rest) == 2
    assert len({x.job_id for x in first + rest}) == 6


async def test_paused_queue_is_skipped_until_resumed(backend: Backend, peer: Backend) -> None:
    a, b = new(queue="a"), new(queue="b")
    await backend.enqueue([a, b])
    await backend.pause("a")
    assert await peer.paused() == {"a"}
    assert await peer.claim(["a"], "w1", 10, LONG) == []
    assert [x.job_id for x in await peer.claim(["a", "b"], "w1", 10, LONG)] == [b.id]
    assert (await must_get(backend, a.id)).state is JobState.QUEUED

    await backend.resume("a")
    assert await peer.paused() == set()
    assert [x.job_id for x in await peer.claim(["a"], "w1", 10, LONG)] == [a.id]


async def test_pause_before_any_job_and_resume_twice(backend: Backend) -> None:
    await backend.pause("a")
    await backend.pause("a")
    await enqueue_one(backend, new(queue="a"))
    assert await backend.claim(["a"], "w1", 10, LONG) == []
    await backend.resume("a")
    await backend.resume("a")
    await backend.resume("never-paused")
    assert await backend.paused() == set()
    assert len(await backend.claim(["a"], "w1", 10, LONG)) == 1


async def test_claim_counts_the_attempt_and_marks_the_job_active(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=3))
    before = await backend.now()
    lease = await claim_one(backend, worker="worker-7", lease=LONG)
    after = await backend.now()

    assert lease.attempts == 1
    job = await must_get(backend, job_id)
    assert job.state is JobState.ACTIVE
    assert job.attempts == 1
    assert job.worker == "worker-7"
    assert job.started_at is not None
    assert before - 0.01 <= job.started_at.timestamp() <= after + 0.01
    assert job.lease_expires_at is not None
    span = job.lease_expires_at.timestamp() - job.started_at.timestamp()
    assert abs(span - LONG) < 0.5


async def test_lease_carries_what_the_worker_needs(backend: Backend) -> None:
    req = new("resize", "images", {"w": 64}, max_attempts=5, timeout=7.5)
    await enqueue_one(backend, req)
    created = (await must_get(backend, req.id)).created_at.timestamp()
    lease = await claim_one(backend, queue="images", lease=12.0)

    assert lease.job_id == req.id
    assert lease.task == "resize"
    assert lease.queue == "images"
    assert lease.data == req.data
    assert (lease.attempts, lease.max_attempts) == (1, 5)
    assert lease.timeout == 7.5
    assert lease.lease == 12.0
    assert isinstance(lease.token, str)
    assert lease.token
    assert abs(lease.created_at - created) < 0.01


async def test_a_job_lease_wins_over_the_claim_lease(backend: Backend) -> None:
    await enqueue_one(backend, new(lease=45.0))
    lease = await claim_one(backend, lease=0.2)
    assert lease.lease == 45.0
    job = await must_get(backend, lease.job_id)
    assert job.lease_expires_at is not None
    assert job.started_at is not None
    assert job.lease_expires_at.timestamp() - job.started_at.timestamp() > 40
    assert await backend.reclaim_expired() == []


async def test_tokens_differ_per_claim(backend: Backend) -> None:
    await backend.enqueue([new(), new()])
    a, b = await backend.claim(["q"], "w1", 2, LONG)
    assert a.token != b.token


async def test_a_claimed_job_is_not_claimed_again(backend: Backend, peer: Backend) -> None:
    await enqueue_one(backend)
    await claim_one(backend)
    assert await peer.claim(["q"], "w2", 10, LONG) == []


async def test_concurrent_claims_never_share_a_job(backend: Backend, peer: Backend) -> None:
    reqs = [new() for _ in range(30)]
    await backend.enqueue(reqs)
    seen: list[str] = []

    async def drain(b: Backend, worker: str) -> None:
        while leases := await b.claim(["q"], worker, 3, LONG):
            seen.extend(x.job_id for x in leases)
            await asyncio.sleep(0)

    await asyncio.gather(drain(backend, "w1"), drain(peer, "w2"), drain(peer, "w3"))
    assert sorted(seen) == sorted(r.id for r in reqs)
