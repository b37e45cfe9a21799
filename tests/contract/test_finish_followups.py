"""finish with follow-ups (``Capabilities.finish_followups``): a completed flow step's next
jobs are written with its outcome in the same step, each as ``enqueue_claimed`` writes it
(its claim, refused once the ``unless`` key is live), and only while its lease holds."""

from __future__ import annotations

import dataclasses

import pytest

from workhorse.backends import Backend, Claim
from workhorse.job import JobState, Lease, NewJob, Outcome

from .support import LONG, claim_one, completed, enqueue_one, must_get, new, settled_log

END = "end"  # the run's end marker the follow-ups' claims name


@pytest.fixture(autouse=True)
def _capable(backend: Backend) -> None:
    if not backend.capabilities.finish_followups:
        pytest.skip(f"{backend.url.split('://')[0]}:// enqueues follow-ups on their own")


def keyed(job: NewJob) -> tuple[Claim, NewJob]:
    return Claim(f"idx:{job.id}", "m", unless=END), job


def with_followups(*jobs: NewJob) -> Outcome:
    outcome = completed(1)
    outcome.followups = [keyed(j) for j in jobs]
    return outcome


async def step(backend: Backend, queue: str = "steps") -> Lease:
    await enqueue_one(backend, new(queue=queue))
    return await claim_one(backend, queue)


async def test_the_outcome_and_its_followups_are_written_together(backend: Backend) -> None:
    lease = await step(backend)
    b, c = new(), new(delay=60)
    outcome = with_followups(b, c)
    assert await backend.finish([(lease, outcome)]) == [True]
    assert (await must_get(backend, lease.job_id)).state is JobState.COMPLETED
    assert outcome.followups_claimed is not None
    assert [(won, r is not None and r.created) for won, r in outcome.followups_claimed] == [
        (True, True),
        (True, True),
    ]
    assert [r.state for _, r in outcome.followups_claimed if r is not None] == [
        JobState.QUEUED,
        JobState.SCHEDULED,
    ]
    assert await backend.kv_scan("idx:") == {f"idx:{b.id}": "m", f"idx:{c.id}": "m"}
    assert (await must_get(backend, c.id)).state is JobState.SCHEDULED
    assert (await claim_one(backend)).job_id == b.id
    counts = await backend.counts(["q", "steps"])
    assert counts["q"]["active"] == 1 and counts["q"]["scheduled"] == 1
    assert counts["steps"]["completed"] == 1 and counts["steps"]["active"] == 0


async def test_a_lost_lease_writes_neither(backend: Backend) -> None:
    lease = await step(backend)
    b = new()
    outcome = with_followups(b)
    stale = dataclasses.replace(lease, token=lease.token + "x")  # reclaimed by another worker
    assert await backend.finish([(stale, outcome)]) == [False]
    assert outcome.followups_claimed is None
    assert (await must_get(backend, lease.job_id)).state is JobState.ACTIVE
    assert await backend.get(b.id) is None
    assert await backend.kv_scan("idx:") == {}


async def test_a_batch_writes_the_followups_of_the_outcomes_it_writes(backend: Backend) -> None:
    first, second = await step(backend), await step(backend)
    b, c = new(), new()
    kept, lost = with_followups(b), with_followups(c)
    stale = dataclasses.replace(second, token=second.token + "x")
    assert await backend.finish([(first, kept), (stale, lost)]) == [True, False]
    assert kept.followups_claimed is not None and kept.followups_claimed[0][0] is True
    assert lost.followups_claimed is None
    assert (await must_get(backend, b.id)).state is JobState.QUEUED
    assert await backend.get(c.id) is None
    assert await backend.kv_scan("idx:") == {f"idx:{b.id}": "m"}


async def test_a_batch_across_queues_answers_each_outcome(backend: Backend) -> None:
    # Each queue's outcomes may go in a call of their own: each answer finds its outcome.
    first, second, third = await step(backend), await step(backend, "other"), await step(backend)
    b, c, d, e = new(), new(queue="other"), new(delay=60), new()
    one, two, three = with_followups(b, c), with_followups(d), with_followups(e)
    stale = dataclasses.replace(third, token=third.token + "x")
    assert await backend.finish([(first, one), (second, two), (stale, three)]) == [
        True,
        True,
        False,
    ]
    assert one.followups_claimed is not None and two.followups_claimed is not None
    assert [(won, r.id if r else None) for won, r in one.followups_claimed] == [
        (True, b.id),
        (True, c.id),
    ]
    assert [(won, r.state if r else None) for won, r in two.followups_claimed] == [
        (True, JobState.SCHEDULED)
    ]
    assert three.followups_claimed is None
    assert (await must_get(backend, c.id)).queue == "other"
    assert await backend.get(e.id) is None
    assert set(await backend.kv_scan("idx:")) == {f"idx:{x.id}" for x in (b, c, d)}


async def test_a_run_ended_refuses_the_followups_not_the_outcome(
    backend: Backend, peer: Backend
) -> None:
    lease = await step(backend)
    assert await peer.set_if_absent(END, "cancelled")
    b = new()
    outcome = with_followups(b)
    assert await backend.finish([(lease, outcome)]) == [True]
    assert outcome.followups_claimed == [(False, None)]
    assert (await must_get(backend, lease.job_id)).state is JobState.COMPLETED
    assert await backend.get(b.id) is None
    assert await backend.kv_scan("idx:") == {}


async def test_a_claim_already_there_still_writes_a_missing_job(backend: Backend) -> None:
    # An earlier attempt's writer set the key and died before its job: this one writes it.
    lease = await step(backend)
    b = new()
    assert await backend.set_if_absent(f"idx:{b.id}", "m")
    outcome = with_followups(b)
    assert await backend.finish([(lease, outcome)]) == [True]
    assert outcome.followups_claimed is not None
    ((won, res),) = outcome.followups_claimed
    assert won is False and res is not None and res.created
    assert (await must_get(backend, b.id)).state is JobState.QUEUED


async def test_a_retry_carries_no_followups_written(backend: Backend) -> None:
    # Only a completed outcome writes them: a retry runs the step again, which writes them.
    lease = await step(backend)
    b = new()
    outcome = Outcome("retry", delay=60.0, followups=[keyed(b)])
    assert await backend.finish([(lease, outcome)]) == [True]
    assert await backend.get(b.id) is None
    assert await backend.kv_scan("idx:") == {}


async def test_a_finish_sent_again_writes_nothing_twice(backend: Backend) -> None:
    lease = await step(backend)
    b = new()
    outcome = with_followups(b)
    assert await backend.finish([(lease, outcome)]) == [True]
    # The follow-up runs and its index entry goes: a second write would bring both back.
    assert (done := await claim_one(backend)).job_id == b.id
    assert await backend.finish([(done, completed(2))]) == [True]
    assert await backend.kv_delete(f"idx:{b.id}")
    # The same outcome again (PostgreSQL: the same call, reported applied; elsewhere the
    # lease is gone): nothing is written.
    await backend.finish([(lease, outcome)])
    assert outcome.followups_claimed in (None, [(False, None)])
    assert await backend.kv_scan("idx:") == {}
    assert (await must_get(backend, b.id)).state is JobState.COMPLETED
    queued = [e for e in await backend.job_events(b.id) if e.type == "job.queued"]
    assert len(queued) == 1
    assert await backend.claim(["q", "steps"], "w1", 10, LONG) == []


async def test_events_in_cause_order(backend: Backend) -> None:
    lease = await step(backend)
    b, c = new(), new()
    assert await backend.finish([(lease, with_followups(b, c))]) == [True]
    # Settled: Redis shows an event once the server's clock passed its millisecond.
    wanted = {("job.completed", lease.job_id), ("job.queued", b.id), ("job.queued", c.id)}
    found = [(e.type, e.job_id) for e in await settled_log(backend)]
    found = [x for x in found if x in wanted]
    # The outcome, then the follow-ups it caused.
    assert found[0] == ("job.completed", lease.job_id)
    assert sorted(found[1:]) == sorted([("job.queued", b.id), ("job.queued", c.id)])
