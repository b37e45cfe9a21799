"""Regression tests for divergences the model-based run found, on every backend."""

from __future__ import annotations

from workhorse import codec
from workhorse.backends import Backend
from workhorse.job import JobState, NewJob, new_job_id


def _new(queue: str, key: str | None, *, delay: float = 0.0, replace: bool = False) -> NewJob:
    return NewJob(
        new_job_id(),
        "t",
        queue,
        codec.dumps({"queue": queue}),
        delay=delay,
        dedup_key=key,
        replace=replace,
    )


async def test_a_batch_mixing_queues_is_applied_in_order(backend: Backend) -> None:
    """Redis grouped a batch by queue, so a later job took a dedup key before an earlier
    one of the same queue (found by scenario 9). A key is per queue: the same key in
    another queue is a job of its own."""
    lead = _new("qa", None)  # qa comes first in the batch: Redis ran all of qa first
    first, other = _new("qb", "k"), _new("qa", "k", delay=3600.0)
    again, third = _new("qb", "k"), _new("qb", "k2")
    results = await backend.enqueue([lead, first, other, again, third])
    assert [(r.id, r.created, r.state, r.replaced) for r in results] == [
        (lead.id, True, JobState.QUEUED, False),
        (first.id, True, JobState.QUEUED, False),
        (other.id, True, JobState.SCHEDULED, False),
        (first.id, False, JobState.QUEUED, False),
        (third.id, True, JobState.QUEUED, False),
    ]
    assert await backend.get(again.id) is None
    job = await backend.get(first.id)
    assert job is not None and job.queue == "qb" and job.data == {"queue": "qb"}


async def test_a_replace_in_a_mixed_batch_follows_the_batch_order(backend: Backend) -> None:
    lead = _new("qb", None)
    first, other = _new("qa", "k", delay=3600.0), _new("qb", "k", replace=True)
    newer = NewJob(
        new_job_id(), "t", "qa", codec.dumps({"newer": True}), dedup_key="k", replace=True
    )
    results = await backend.enqueue([lead, first, other, newer])
    assert [(r.id, r.created, r.replaced) for r in results][1:] == [
        (first.id, True, False),
        (other.id, True, False),  # its own queue holds no live "k"
        (first.id, False, True),
    ]
    job = await backend.get(first.id)
    # The live job takes the newer payload and due time.
    assert job is not None and job.state is JobState.QUEUED and job.data == {"newer": True}


async def test_a_job_replaced_within_its_own_batch_is_claimed_once(backend: Backend) -> None:
    """Redis kept the first ready entry of a job replaced later in the same batch: a
    cancelled job was still claimed, and a live one could be claimed twice."""
    first, again = _new("qa", "k"), _new("qa", "k", replace=True)
    await backend.enqueue([first, again])
    leases = await backend.claim(["qa"], "w", 10, 30.0)
    assert [x.job_id for x in leases] == [first.id]
    assert await backend.claim(["qa"], "w", 10, 30.0) == []


async def test_a_job_replaced_within_its_own_batch_stays_cancelled(backend: Backend) -> None:
    first, again = _new("qa", "k"), _new("qa", "k", replace=True)
    await backend.enqueue([first, again])
    assert await backend.cancel(first.id) is JobState.CANCELLED
    assert await backend.claim(["qa"], "w", 10, 30.0) == []
    job = await backend.get(first.id)
    assert job is not None and job.state is JobState.CANCELLED and job.attempts == 0
