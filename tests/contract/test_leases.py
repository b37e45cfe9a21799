"""Leases and tokens: renew, lost leases, stale finishes, reclaiming expired leases."""

from __future__ import annotations

import asyncio
import time

import pytest

from workhorse.backends import Backend
from workhorse.job import MAX_STALLS, JobState, Lease, Outcome

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


async def test_renew_extends_the_lease(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend, lease=0.4)
    first = (await must_get(backend, job_id)).lease_expires_at
    assert first is not None

    # Renew every 0.1 s for longer than the original lease lasted. A sweep that follows a
    # renew closely must find nothing to reclaim; one that a stalled machine delayed past
    # the renewed lease proves nothing either way, so it is not judged.
    checked_after_expiry = False
    end = time.monotonic() + 0.9
    while time.monotonic() < end:
        await asyncio.sleep(0.1)
        renewed_at = time.monotonic()
        result = await backend.renew([lease])
        assert result.lost == frozenset()
        assert result.cancel == frozenset()
        reclaimed = await backend.reclaim_expired()
        if time.monotonic() - renewed_at < 0.3:
            assert reclaimed == [], "a renewed lease was reclaimed"
            checked_after_expiry |= await backend.now() > first.timestamp() + 0.05
        elif reclaimed:
            pytest.skip("the machine stalled longer than the lease; nothing to judge")
    assert checked_after_expiry, "no sweep ran after the original expiry"

    job = await must_get(backend, job_id)
    assert job.state is JobState.ACTIVE
    assert job.attempts == 1
    assert job.lease_expires_at is not None
    assert job.lease_expires_at.timestamp() > first.timestamp() + 0.5
    assert await backend.finish([(lease, completed("ok"))]) == [True]


async def test_renew_of_nothing(backend: Backend) -> None:
    result = await backend.renew([])
    assert (result.lost, result.cancel) == (frozenset(), frozenset())


async def test_renew_reports_leases_that_are_gone(backend: Backend) -> None:
    await backend.enqueue([new(), new()])
    mine, done = await backend.claim(["q"], "w1", 2, LONG)
    assert await backend.finish([(done, completed())]) == [True]
    unknown = Lease("0" * 32, "x", "t", "q", b"{}", 1, 1, None, LONG, 0.0)

    result = await backend.renew([mine, done, unknown])
    assert result.lost == {done.job_id, unknown.job_id}
    assert result.cancel == frozenset()


async def test_renew_with_a_wrong_token_is_lost_and_changes_nothing(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    mine = await claim_one(backend, lease=LONG)
    expires = (await must_get(backend, job_id)).lease_expires_at
    forged = _with_token(mine, "not-the-token")
    forged.lease = 3600.0

    assert (await backend.renew([forged])).lost == {job_id}
    assert (await must_get(backend, job_id)).lease_expires_at == expires
    assert (await backend.renew([mine])).lost == frozenset()


def _with_token(lease: Lease, token: str) -> Lease:
    return Lease(
        lease.job_id,
        token,
        lease.task,
        lease.queue,
        lease.data,
        lease.attempts,
        lease.max_attempts,
        lease.timeout,
        lease.lease,
        lease.created_at,
    )


async def test_expired_lease_goes_back_to_queued(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=3))
    first = await claim_one(backend, worker="dead", lease=SHORT)
    expires = (await must_get(backend, job_id)).lease_expires_at
    assert expires is not None
    early = await backend.reclaim_expired()
    if await backend.now() < expires.timestamp():
        assert early == [], "a lease was reclaimed before it expired"
    await reclaim(backend, job_id)

    job = await must_get(backend, job_id)
    assert job.state is JobState.QUEUED
    assert (job.attempts, job.stalls) == (0, 1)  # a stall, not an attempt
    assert job.lease_expires_at is None
    assert await backend.reclaim_expired() == []  # once only

    second = await claim_one(backend, worker="alive")
    assert second.job_id == job_id
    assert second.attempts == 1
    assert second.token != first.token
    assert (await must_get(backend, job_id)).worker == "alive"


async def test_reclaim_leaves_live_leases_alone(backend: Backend) -> None:
    await backend.enqueue([new(max_attempts=2), new(max_attempts=2)])
    short = await claim_one(backend, lease=SHORT)
    long = await claim_one(backend, lease=LONG)
    await reclaim(backend, short.job_id)
    assert (await must_get(backend, long.job_id)).state is JobState.ACTIVE
    assert (await backend.renew([long])).lost == frozenset()


async def test_a_stall_spends_no_attempt(backend: Backend) -> None:
    """A job with one attempt (retries=0) whose worker died runs again, and its next
    attempt is still its first."""
    job_id = await enqueue_one(backend, new(max_attempts=1))
    await claim_one(backend, worker="w-dead", lease=SHORT)
    await reclaim(backend, job_id)

    job = await must_get(backend, job_id)
    assert job.state is JobState.QUEUED
    assert (job.attempts, job.stalls, job.max_stalls) == (0, 1, MAX_STALLS)
    again = await claim_one(backend, worker="w-alive")
    assert (again.attempts, again.max_attempts) == (1, 1)
    assert await backend.finish([(again, completed("ran"))]) == [True]
    job = await must_get(backend, job_id)
    assert (job.state, job.result, job.attempts, job.stalls) == (JobState.COMPLETED, "ran", 1, 1)


async def test_spent_stalls_end_failed_with_the_reason(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=5, max_stalls=1))
    await claim_one(backend, worker="w-a", lease=SHORT)
    await reclaim(backend, job_id)
    assert (await must_get(backend, job_id)).state is JobState.QUEUED
    await claim_one(backend, worker="w-b", lease=SHORT)
    await reclaim(backend, job_id)

    job = await must_get(backend, job_id)
    assert job.state is JobState.FAILED
    assert (job.attempts, job.stalls, job.max_stalls) == (0, 2, 1)
    assert job.finished_at is not None
    assert job.error is not None
    assert job.error["type"] == "LeaseExpired"
    assert "killed its worker 2 times" in job.error["message"]
    assert await backend.claim(["q"], "w-c", 10, LONG) == []


async def test_max_stalls_zero_fails_at_the_first_stall(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=3, max_stalls=0))
    await claim_one(backend, worker="w-dead", lease=SHORT)
    await reclaim(backend, job_id)
    job = await must_get(backend, job_id)
    assert (job.state, job.attempts, job.stalls) == (JobState.FAILED, 0, 1)
    assert job.error is not None
    assert "killed its worker 1 times" in job.error["message"]


async def test_stalls_and_failed_attempts_are_counted_apart(backend: Backend) -> None:
    """Attempts that ran and failed do not shrink the stall budget, nor stalls the
    attempts; a refunded retry (a full limit, shutdown) changes neither."""
    job_id = await enqueue_one(backend, new(max_attempts=2, max_stalls=1))
    first = await claim_one(backend, worker="w-a")
    assert await backend.finish([(first, Outcome("retry", error=error()))]) == [True]
    await claim_one(backend, worker="w-dead", lease=SHORT)
    await reclaim(backend, job_id)
    job = await must_get(backend, job_id)
    assert (job.state, job.attempts, job.stalls) == (JobState.QUEUED, 1, 1)

    refunded = await claim_one(backend, worker="w-b")
    assert refunded.attempts == 2
    assert await backend.finish([(refunded, Outcome("retry", refund=True))]) == [True]
    last = await claim_one(backend, worker="w-c")
    assert (last.attempts, last.max_attempts) == (2, 2)
    assert await backend.finish([(last, failed())]) == [True]
    job = await must_get(backend, job_id)
    assert (job.state, job.attempts, job.stalls) == (JobState.FAILED, 2, 1)


async def test_retry_by_hand_gives_fresh_stalls(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_stalls=0))
    await claim_one(backend, worker="w-dead", lease=SHORT)
    await reclaim(backend, job_id)
    assert await backend.retry(job_id) is True
    job = await must_get(backend, job_id)
    assert (job.state, job.attempts, job.stalls, job.max_stalls) == (JobState.QUEUED, 0, 0, 0)


async def test_replace_takes_the_new_max_stalls(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(dedup_key="k", delay=60, max_stalls=1))
    dup = new(dedup_key="k", max_stalls=0)
    dup.replace = True
    (res,) = await backend.enqueue([dup])
    assert (res.id, res.replaced) == (job_id, True)
    assert (await must_get(backend, job_id)).max_stalls == 0


async def test_stale_token_finish_is_refused_and_changes_nothing(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=2))
    stale = await claim_one(backend, worker="slow", lease=SHORT)
    await reclaim(backend, job_id)
    fresh = await claim_one(backend, worker="fast", lease=LONG)
    before = await must_get(backend, job_id)

    assert await backend.finish([(stale, completed("late"))]) == [False]
    after = await must_get(backend, job_id)
    assert after.state is JobState.ACTIVE
    assert after.result is None
    assert (after.worker, after.attempts, after.stalls) == ("fast", 1, 1)
    assert after.lease_expires_at == before.lease_expires_at

    assert (await backend.renew([stale])).lost == {job_id}
    assert await backend.update(stale, progress=99, logs=[{"message": "late"}]) is False
    assert (await must_get(backend, job_id)).progress is None

    assert await backend.finish([(fresh, completed("on time"))]) == [True]
    assert (await must_get(backend, job_id)).result == "on time"


async def test_finish_after_the_lease_expired_but_before_reclaim(backend: Backend) -> None:
    """Until another worker reclaims it, a late finish by the owner still lands."""
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend, lease=SHORT)
    await asyncio.sleep(SHORT + 0.1)
    assert await backend.finish([(lease, completed(1))]) == [True]
    assert (await must_get(backend, job_id)).state is JobState.COMPLETED
    assert await backend.reclaim_expired() == []


async def test_update_records_progress_and_logs(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    line_a = {"at": 1.0, "level": "info", "message": "a"}
    line_b = {"at": 2.0, "level": "info", "message": "b", "fields": {"n": 1}}
    assert await backend.update(lease, progress=10, logs=[line_a]) is True
    assert await backend.update(lease, progress={"done": 5, "of": 9}, logs=[line_b]) is True
    assert await backend.update(lease, logs=[]) is True  # progress None keeps the last one

    job = await must_get(backend, job_id)
    assert job.progress == {"done": 5, "of": 9}
    assert job.logs == [line_a, line_b]


async def test_update_is_refused_when_the_lease_is_lost(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=2))
    lease = await claim_one(backend, lease=SHORT)
    await reclaim(backend, job_id)
    assert await backend.update(lease, progress=50, logs=[{"message": "x"}]) is False
    job = await must_get(backend, job_id)
    assert job.progress is None
    assert job.logs == []


async def test_renew_uses_the_lease_span(backend: Backend) -> None:
    """A renew sets the expiry to now + the lease's span, on the backend's clock."""
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend, lease=5.0)
    before = await backend.now()
    await backend.renew([lease])
    after = await backend.now()
    expires = (await must_get(backend, job_id)).lease_expires_at
    assert expires is not None
    assert before + 5.0 - 0.01 <= expires.timestamp() <= after + 5.0 + 0.01
