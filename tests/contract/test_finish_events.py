"""finish with a flow step's own events (``Capabilities.finish_events``): a written
outcome's ``events`` are published as ``publish`` would (the log and the run's index),
before the outcome's own event and before its follow-ups', in the same step; a refused
outcome writes none of them."""

from __future__ import annotations

import dataclasses

import pytest

from workhorse.backends import Backend, Claim
from workhorse.job import Event, JobState, Lease, Outcome

from .support import claim_one, completed, enqueue_one, failed, must_get, new, settled_log

RUN = "r1"


@pytest.fixture(autouse=True)
def _capable(backend: Backend) -> None:
    if not backend.capabilities.finish_events:
        pytest.skip(f"{backend.url.split('://')[0]}:// publishes a step's events on their own")


def step_events(lease: Lease, at: float, *types: str) -> list[Event]:
    data = {"run": RUN, "flow": "f", "step": "s", "attempt": 1}
    return [Event(t, lease.job_id, "s", lease.queue, data, at + n) for n, t in enumerate(types)]


async def step(backend: Backend, queue: str = "steps") -> Lease:
    await enqueue_one(backend, new(queue=queue))
    return await claim_one(backend, queue)


async def _run_events(backend: Backend, count: int) -> list[Event]:
    """The run's events once ``count`` show (PostgreSQL shows a commit a moment later)."""
    log = await settled_log(backend)
    assert len([e for e in log if e.data.get("run") == RUN]) == count
    return await backend.run_events(RUN, 0, 1000)


async def test_the_events_go_before_the_outcomes_and_keep_their_time(backend: Backend) -> None:
    lease = await step(backend)
    outcome = completed(1)
    outcome.events = step_events(lease, 1_000_000.0, "step.started", "step.completed")
    assert await backend.finish([(lease, outcome)]) == [True]
    got = await _run_events(backend, 2)
    assert [(e.type, e.job_id, e.task, e.queue, e.at) for e in got] == [
        ("step.started", lease.job_id, "s", "steps", 1_000_000.0),
        ("step.completed", lease.job_id, "s", "steps", 1_000_001.0),
    ]
    assert got[0].data == {"run": RUN, "flow": "f", "step": "s", "attempt": 1}
    log = await settled_log(backend)
    types = [e.type for e in log if e.job_id == lease.job_id]
    assert types[-4:] == ["job.started", "step.started", "step.completed", "job.completed"]
    # The same events, under the same ids, as the whole log holds them.
    assert [e.id for e in log if e.data.get("run") == RUN] == [e.id for e in got]


async def test_a_refused_outcome_writes_none_of_them(backend: Backend) -> None:
    lease = await step(backend)
    outcome = completed(1)
    outcome.events = step_events(lease, 1_000_000.0, "step.started", "step.completed")
    stale = dataclasses.replace(lease, token=lease.token + "x")  # reclaimed by another worker
    assert await backend.finish([(stale, outcome)]) == [False]
    assert (await must_get(backend, lease.job_id)).state is JobState.ACTIVE
    assert [e for e in await settled_log(backend) if e.type.startswith("step.")] == []
    assert await backend.run_events(RUN) == []


async def test_a_batch_writes_the_events_of_the_outcomes_it_writes(backend: Backend) -> None:
    # A retry (SQLite numbers its event with the job's place), a refusal, a failure with
    # events, a completion with follow-ups: each written item's events before its own.
    retried, lost, ended, handed = [await step(backend) for _ in range(4)]
    again = Outcome("retry", error={"type": "E", "message": "m", "traceback": ""}, delay=0.0)
    again.events = step_events(retried, 1.0, "step.started", "step.retrying")
    refused = completed()
    refused.events = step_events(lost, 1.0, "step.started", "step.completed")
    down = failed()
    down.events = step_events(ended, 1.0, "step.started", "step.failed")
    done = completed()
    done.events = step_events(handed, 1.0, "step.started", "step.completed")
    nxt = new(queue="other")
    done.followups = [(Claim(f"idx:{nxt.id}", "m"), nxt)]
    capable = backend.capabilities.finish_followups
    if not capable:
        done.followups = ()
    stale = dataclasses.replace(lost, token=lost.token + "x")
    items = [(retried, again), (stale, refused), (ended, down), (handed, done)]
    assert await backend.finish(items) == [True, False, True, True]
    log = await settled_log(backend)
    got = await _run_events(backend, 6)
    assert sorted((e.job_id, e.type) for e in got) == sorted(
        [
            (retried.job_id, "step.started"),
            (retried.job_id, "step.retrying"),
            (ended.job_id, "step.started"),
            (ended.job_id, "step.failed"),
            (handed.job_id, "step.started"),
            (handed.job_id, "step.completed"),
        ]
    )
    position = {(e.job_id, e.type): n for n, e in enumerate(log)}
    for lease, own in ((retried, "job.retrying"), (ended, "job.failed"), (handed, "job.completed")):
        ours = [e.type for e in log if e.job_id == lease.job_id]
        assert ours.index("step.started") < ours.index(own), ours
        assert next(t for t in ours if t.startswith("step.")) == "step.started"
    if capable:
        queued = position[(nxt.id, "job.queued")]
        assert position[(handed.job_id, "step.completed")] < queued
    # The requeued job is claimed again as a queued job should be (its place is intact).
    assert (await claim_one(backend, "steps")).job_id == retried.job_id
    assert [e for e in log if e.job_id == lost.job_id and e.type.startswith("step.")] == []


async def test_events_ride_beside_outcomes_without_any(backend: Backend) -> None:
    plain, stepped = await step(backend), await step(backend)
    outcome = completed(2)
    outcome.events = step_events(stepped, 5.0, "step.started", "step.completed")
    assert await backend.finish([(plain, completed(1)), (stepped, outcome)]) == [True, True]
    assert [e.type for e in await _run_events(backend, 2)] == ["step.started", "step.completed"]
    assert (await must_get(backend, plain.job_id)).result == 1
    assert [e.type for e in await settled_log(backend, plain.job_id)][-1] == "job.completed"
