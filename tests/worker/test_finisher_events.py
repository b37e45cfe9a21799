"""A flow step's outcome is written only once its events are stored (``Outcome.after``,
waited for by the finisher, once per batch), and an outcome without events in the same
batch is not held back by events that do not get stored."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.support import claim_one, completed, enqueue_one, must_get, new, settled_log
from workhorse.backends import Backend
from workhorse.job import Event, JobState
from workhorse.worker import finisher as finishing
from workhorse.worker.finisher import Finisher


async def test_an_outcome_waits_for_its_events(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(queue="steps"))
    lease = await claim_one(backend, "steps")
    events: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    outcome = completed(1)
    outcome.after = events
    finisher = Finisher(backend)
    written = finisher.submit(lease, outcome)
    await asyncio.sleep(0.05)
    assert not written.done()
    assert (await must_get(backend, job_id)).state is JobState.ACTIVE
    events.set_result(None)
    assert await written is True
    assert (await must_get(backend, job_id)).state is JobState.COMPLETED


async def test_events_not_stored_hold_back_only_their_own_outcome(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(finishing, "_EVENTS_WAIT", 0.05)
    step_id = await enqueue_one(backend, new(queue="steps"))
    step = await claim_one(backend, "steps")
    plain_id = await enqueue_one(backend, new(queue="plain"))
    plain = await claim_one(backend, "plain")
    stuck: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    outcome = completed(1)
    outcome.after = stuck  # events the store does not take (yet)
    finisher = Finisher(backend)
    held = finisher.submit(step, outcome)
    assert await asyncio.wait_for(finisher.submit(plain, completed(2)), 5) is True
    assert (await must_get(backend, plain_id)).state is JobState.COMPLETED
    assert not held.done()
    assert (await must_get(backend, step_id)).state is JobState.ACTIVE
    stuck.set_result(None)
    assert await asyncio.wait_for(held, 5) is True
    assert (await must_get(backend, step_id)).state is JobState.COMPLETED
    assert await finisher.drain(5) == 0


async def test_a_steps_events_the_store_cannot_encode_are_written_as_their_repr(
    backend: Backend,
) -> None:
    # Carried by the finish (Outcome.events): a value that is not JSON must not hold back
    # the outcome, nor the batch.
    if not backend.capabilities.finish_events:
        pytest.skip("its steps publish their events apart")
    if backend.url.startswith("memory"):
        pytest.skip("memory encodes nothing")
    job_id = await enqueue_one(backend, new(queue="steps"))
    lease = await claim_one(backend, "steps")
    outcome = completed(1)
    odd = object()
    outcome.events = [Event("step.completed", job_id, "s", "steps", {"run": "r9", "x": odd})]
    finisher = Finisher(backend)
    assert await finisher.submit(lease, outcome) is True
    assert await finisher.drain(5) == 0
    assert (await must_get(backend, job_id)).state is JobState.COMPLETED
    (event,) = [e for e in await settled_log(backend, job_id) if e.type == "step.completed"]
    assert event.data == {"run": "r9", "x": repr(odd)}
