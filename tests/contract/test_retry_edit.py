"""Retry with a new payload: the payload is replaced in the same step as the retry, the job
runs with it, and its job.queued event names who changed it and keeps the old one."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from workhorse import PayloadError, Workhorse, codec
from workhorse.backends import Backend
from workhorse.job import JobState

from .support import claim_one, enqueue_one, failed, must_get, new, settled_log


async def _failed_job(backend: Backend, data: object) -> str:
    job_id = await enqueue_one(backend, new(data=data))
    lease = await claim_one(backend)
    await backend.finish([(lease, failed())])
    return job_id


async def test_a_retry_with_a_new_payload_runs_it_and_its_event_keeps_the_old(
    backend: Backend, peer: Backend
) -> None:
    job_id = await _failed_job(backend, {"to": "old@example.com", "n": 1})
    new_data = codec.dumps({"to": "new@example.com", "n": 2})
    assert await backend.retry(job_id, new_data, "ops (write token)") is True

    job = await must_get(peer, job_id)
    assert (job.state, job.data, job.attempts, job.error) == (
        JobState.QUEUED,
        {"to": "new@example.com", "n": 2},
        0,
        None,
    )
    lease = await claim_one(peer)
    assert codec.loads(lease.data) == {"to": "new@example.com", "n": 2}
    queued = [e for e in await settled_log(peer, job_id) if e.type == "job.queued"]
    assert queued[-1].data == {
        "retried": True,
        "edited": {"by": "ops (write token)", "previous": {"to": "old@example.com", "n": 1}},
    }


async def test_a_retry_without_a_payload_keeps_it_and_says_nothing_of_an_edit(
    backend: Backend,
) -> None:
    job_id = await _failed_job(backend, {"to": "a@example.com"})
    assert await backend.retry(job_id) is True
    assert (await must_get(backend, job_id)).data == {"to": "a@example.com"}
    queued = [e for e in await settled_log(backend, job_id) if e.type == "job.queued"]
    assert queued[-1].data == {"retried": True}


async def test_a_payload_of_null_replaces_the_old_one(backend: Backend) -> None:
    job_id = await _failed_job(backend, {"big": "x" * 100})
    assert await backend.retry(job_id, codec.dumps(None), "ops") is True
    assert (await must_get(backend, job_id)).data is None


async def test_a_job_that_is_not_failed_or_cancelled_keeps_its_payload(backend: Backend) -> None:
    waiting = await enqueue_one(backend, new(data={"v": 1}))
    assert await backend.retry(waiting, codec.dumps({"v": 2}), "ops") is False
    assert (await must_get(backend, waiting)).data == {"v": 1}
    lease = await claim_one(backend)
    assert await backend.retry(waiting, codec.dumps({"v": 3}), "ops") is False
    assert (await must_get(backend, waiting)).data == {"v": 1}
    await backend.finish([(lease, failed())])
    queued = [e for e in await settled_log(backend, waiting) if e.type == "job.queued"]
    assert len(queued) == 1  # only the enqueue's: the refused retries wrote nothing


async def test_a_retry_with_a_payload_is_applied_once_when_sent_twice(backend: Backend) -> None:
    job_id = await _failed_job(backend, {"v": 1})
    assert await backend.retry(job_id, codec.dumps({"v": 2}), "ops") is True
    # A resent call (a lost reply) finds the job queued again: nothing changes twice.
    assert await backend.retry(job_id, codec.dumps({"v": 2}), "ops") is False
    queued = [e for e in await settled_log(backend, job_id) if e.type == "job.queued"]
    assert len(queued) == 2


class Email(BaseModel):
    to: str
    subject: str = "hello"


async def test_the_client_checks_the_new_payload_as_the_task_would(app: Workhorse) -> None:
    @app.task(queue="q", retries=0)
    async def send(data: Email) -> None:
        raise ValueError("mail server down")

    handle = await send.enqueue(Email(to="a@example.com"))
    backend = await app.client.store()
    lease = await claim_one(backend)
    await backend.finish([(lease, failed())])

    with pytest.raises(PayloadError, match="invalid payload for task 'send'"):
        await app.retry(handle.id, {"subject": "no address"}, by="ops")
    still = await must_get(backend, handle.id)
    assert (still.state, still.data) == (
        JobState.FAILED,
        {"to": "a@example.com", "subject": "hello"},
    )

    assert await app.retry(handle.id, {"to": "b@example.com"}, by="ops") is True
    fixed = await must_get(backend, handle.id)
    # The model's defaults are filled in, as at enqueue.
    assert fixed.data == {"to": "b@example.com", "subject": "hello"}
    queued = [e for e in await settled_log(backend, handle.id) if e.type == "job.queued"]
    assert queued[-1].data["edited"] == {
        "by": "ops",
        "previous": {"to": "a@example.com", "subject": "hello"},
    }


async def test_the_client_refuses_a_payload_over_max_payload(app: Workhorse) -> None:
    backend = await app.client.store()
    job_id = await _failed_job(backend, {"v": 1})  # task "t": not defined in this app
    too_big = {"blob": "x" * (app.client.max_payload + 1)}
    with pytest.raises(PayloadError, match="payload for task 't'"):
        await app.retry(job_id, too_big, by="ops")
    assert (await must_get(backend, job_id)).state is JobState.FAILED
