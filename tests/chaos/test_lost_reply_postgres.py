"""A PostgreSQL finish whose commit happened but whose reply was lost: the finisher sends it
again with the same lease token, and the store reports it applied (the row keeps the token
that finished it) instead of refusing it as a lease no longer held. The job is finished
once, the worker reports success, and its in-process event fires. A token that did not
finish the job (a stale worker's) is still refused. The client talks to the server through
a proxy that resets the connection after the request went up and before its reply."""

from __future__ import annotations

import asyncio
import logging
from binascii import b2a_base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.proxy import Proxy
from tests.conftest import backend_url
from tests.contract.support import (
    LONG,
    claim_one,
    completed,
    enqueue_one,
    must_get,
    new,
    settled_log,
)
from tests.worker.worker_helpers import running
from workhorse import Workhorse, codec
from workhorse.backends import Claim
from workhorse.backends.postgres import PostgresBackend
from workhorse.errors import BackendError
from workhorse.job import Event, JobState, Outcome, RunEnd


@dataclass
class Lossy:
    url: str  # through the proxy
    backend: PostgresBackend  # through the proxy
    direct: PostgresBackend  # straight to the server, to look
    proxy: Proxy


@pytest.fixture
async def lossy(tmp_path: Path) -> AsyncIterator[Lossy]:
    url = backend_url("postgres", tmp_path)
    proxy = Proxy("127.0.0.1", 5432).start()
    through = url.replace(":5432/", f":{proxy.port}/", 1)
    direct = PostgresBackend(url)
    await direct.open()  # creates the schema
    backend = PostgresBackend(through)
    await backend.open()
    try:
        yield Lossy(through, backend, direct, proxy)
    finally:
        await backend.close()
        await direct.drop()
        await direct.close()
        proxy.close()


def of(events: list[Event], kind: str, job_id: str | None = None) -> list[Event]:
    return [e for e in events if e.type == kind and (job_id is None or e.job_id == job_id)]


async def test_a_finish_sent_again_after_a_lost_reply_reports_it_applied(lossy: Lossy) -> None:
    job_id = await enqueue_one(lossy.direct)
    lease = await claim_one(lossy.direct)
    outcome = completed({"n": 1})
    lossy.proxy.lose(lease.token.encode())
    with pytest.raises(BackendError):
        await lossy.backend.finish([(lease, outcome)])
    assert lossy.proxy.lost == 1, "the proxy did not lose the reply"
    job = await must_get(lossy.direct, job_id)
    assert job.state is JobState.COMPLETED  # the commit happened
    # The finisher sends the same outcome again: the same call, reported applied.
    assert await lossy.backend.finish([(lease, outcome)]) == [True]
    # Another finish with that lease is no replay: refused, as on every store.
    assert await lossy.backend.finish([(lease, completed({"n": 1}))]) == [False]
    job = await must_get(lossy.direct, job_id)
    assert job.state is JobState.COMPLETED and job.result == {"n": 1}
    assert len(of(await settled_log(lossy.direct), "job.completed", job_id)) == 1


async def test_a_finish_with_followups_sent_again_writes_them_once(lossy: Lossy) -> None:
    """A flow step's follow-ups go with its outcome (Outcome.followups): the replay of a
    finish whose commit happened writes none of them again, and answers them not new."""
    job_id = await enqueue_one(lossy.direct, new(queue="steps"))
    lease = await claim_one(lossy.direct, "steps")
    nxt = new()
    outcome = completed({"n": 1})
    outcome.followups = [(Claim(f"idx:{nxt.id}", "m", unless="end"), nxt)]
    lossy.proxy.lose(lease.token.encode())
    with pytest.raises(BackendError):
        await lossy.backend.finish([(lease, outcome)])
    assert lossy.proxy.lost == 1, "the proxy did not lose the reply"
    # Committed together: the outcome and the follow-up.
    assert (await must_get(lossy.direct, job_id)).state is JobState.COMPLETED
    assert (await must_get(lossy.direct, nxt.id)).state is JobState.QUEUED
    # The follow-up runs and its index entry goes: a second write would bring both back.
    done = await claim_one(lossy.direct)
    assert await lossy.direct.finish([(done, completed())]) == [True]
    assert await lossy.direct.kv_delete(f"idx:{nxt.id}")
    assert await lossy.backend.finish([(lease, outcome)]) == [True]
    assert outcome.followups_claimed == [(False, None)]
    assert await lossy.direct.kv_scan("idx:") == {}
    assert (await must_get(lossy.direct, nxt.id)).state is JobState.COMPLETED
    log = await settled_log(lossy.direct)
    assert len(of(log, "job.queued", nxt.id)) == 1
    assert len(of(log, "job.completed", job_id)) == 1


async def test_a_finish_with_a_steps_events_sent_again_writes_them_once(lossy: Lossy) -> None:
    """A flow step's own events go with its outcome (Outcome.events): the replay of a
    finish whose commit happened writes none of them again."""
    job_id = await enqueue_one(lossy.direct, new(queue="steps"))
    lease = await claim_one(lossy.direct, "steps")
    data = {"run": "r1", "flow": "f", "step": "s", "attempt": 1}
    outcome = completed({"n": 1})
    outcome.events = [
        Event(t, job_id, "s", "steps", data, 1.0) for t in ("step.started", "step.completed")
    ]
    lossy.proxy.lose(lease.token.encode())
    with pytest.raises(BackendError):
        await lossy.backend.finish([(lease, outcome)])
    assert lossy.proxy.lost == 1, "the proxy did not lose the reply"
    assert (await must_get(lossy.direct, job_id)).state is JobState.COMPLETED
    assert await lossy.backend.finish([(lease, outcome)]) == [True]
    log = await settled_log(lossy.direct)
    assert [e.type for e in log if e.job_id == job_id][-3:] == [
        "step.started",
        "step.completed",
        "job.completed",
    ]
    assert len(of(log, "step.started")) == 1 and len(of(log, "step.completed")) == 1
    assert [e.type for e in await lossy.direct.run_events("r1")] == [
        "step.started",
        "step.completed",
    ]


@pytest.mark.parametrize("stateful", [False, True])
async def test_a_finish_with_a_runs_end_sent_again_reports_it_ended(
    lossy: Lossy, stateful: bool
) -> None:
    """A run's end goes with its last step's outcome (Outcome.end): the replay writes
    nothing again and answers as the first run did, read back from its end marker."""
    live = "f state" if stateful else "f"
    await lossy.direct.kv_set("live:r1", live)
    job_id = await enqueue_one(lossy.direct, new(queue="steps"))
    lease = await claim_one(lossy.direct, "steps")
    outcome = completed({"n": 1})
    event = Event("flow.completed", None, None, None, {"run": "r1", "flow": "f"}, 1.0)
    outcome.end = RunEnd("end:r1", "done 1.000001", "live:r1", "f", event)
    lossy.proxy.lose(lease.token.encode())
    with pytest.raises(BackendError):
        await lossy.backend.finish([(lease, outcome)])
    assert lossy.proxy.lost == 1, "the proxy did not lose the reply"
    assert (await must_get(lossy.direct, job_id)).state is JobState.COMPLETED
    assert await lossy.backend.finish([(lease, outcome)]) == [True]
    assert outcome.ended == (True, not stateful)
    assert await lossy.direct.kv_get("end:r1") == "done 1.000001"
    assert await lossy.direct.kv_get("live:r1") == (live if stateful else None)
    log = await settled_log(lossy.direct)
    assert len(of(log, "flow.completed")) == (0 if stateful else 1)


async def test_a_counter_batch_whose_reply_is_lost_counted_once(lossy: Lossy) -> None:
    """A counter batch is one statement: its lost reply is an error to the caller (a
    counter add is not sent again), and the commit added each item once, or none."""
    await lossy.direct.counter_add("a", 10)
    lossy.proxy.lose(b"lost-batch-marker")
    items = [("a", 1, None), ("lost-batch-marker", 2, 30.0), ("a", 3, None)]
    with pytest.raises(BackendError):
        await lossy.backend.counter_add_many(items)
    assert lossy.proxy.lost == 1, "the proxy did not lose the reply"
    assert await lossy.direct.counter_add_many(
        [("a", 0, None), ("lost-batch-marker", 0, None)]
    ) == [
        14,
        2,
    ]
    assert await lossy.backend.counter_add_many([("a", 1, None)]) == [15]  # it works on


async def test_a_replayed_retry_does_not_touch_the_next_attempt(lossy: Lossy) -> None:
    job_id = await enqueue_one(lossy.direct, new(max_attempts=2))
    first = await claim_one(lossy.direct)
    retry = Outcome("retry")
    assert await lossy.direct.finish([(first, retry)]) == [True]
    second = await claim_one(lossy.direct, worker="w2")
    # The first worker's finish again: reported applied, and the running attempt is kept.
    assert await lossy.backend.finish([(first, retry)]) == [True]
    job = await must_get(lossy.direct, job_id)
    assert job.state is JobState.ACTIVE and job.attempts == 2
    assert await lossy.direct.finish([(second, completed())]) == [True]
    assert len(of(await settled_log(lossy.direct), "job.retrying", job_id)) == 1


async def test_a_stale_token_never_finishes_a_job_someone_else_holds(lossy: Lossy) -> None:
    job_id = await enqueue_one(lossy.direct)
    stale = await claim_one(lossy.direct, lease=0.2)
    await asyncio.sleep(0.3)
    assert job_id in await lossy.direct.reclaim_expired()
    holder = await claim_one(lossy.direct, worker="w2", lease=LONG)
    assert await lossy.backend.finish([(stale, completed("stale"))]) == [False]
    assert (await must_get(lossy.direct, job_id)).state is JobState.ACTIVE
    assert await lossy.direct.finish([(holder, completed("ours"))]) == [True]
    assert (await must_get(lossy.direct, job_id)).result == "ours"


async def test_a_worker_whose_finish_reply_is_lost_reports_the_job_done(
    lossy: Lossy, caplog: pytest.LogCaptureFixture
) -> None:
    app = Workhorse(lossy.url, poll_interval=0.05)
    marker = "lost-reply-marker-0123456789"

    @app.task
    async def answer() -> str:
        return marker

    done: list[Event] = []
    app.on("job.completed", done.append, local=True)  # the worker's in-process event
    # The finish carries the result as base64 in its JSON document: lose that request.
    lossy.proxy.lose(b2a_base64(codec.dumps(marker), newline=False))
    caplog.set_level(logging.WARNING, logger="workhorse")
    async with app, running(app, concurrency=1):
        handle = await answer.enqueue()
        job = await app.wait(handle.id, 20)
        for _ in range(100):  # the event follows the finish's reply
            if done:
                break
            await asyncio.sleep(0.05)
    assert lossy.proxy.lost == 1, "the proxy did not lose the reply"
    assert job.state is JobState.COMPLETED and job.result == marker
    assert [e.job_id for e in done] == [handle.id]
    assert "dropped" not in caplog.text
    assert len(of(await settled_log(lossy.direct), "job.completed", handle.id)) == 1
