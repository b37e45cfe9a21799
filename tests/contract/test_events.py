"""The durable event log: publish, events(after=cursor), and the lifecycle events the
backend writes itself."""

from __future__ import annotations

from workhorse.backends import Backend
from workhorse.job import Event, Outcome

from .support import (
    SHORT,
    claim_one,
    completed,
    enqueue_one,
    error,
    failed,
    new,
    reclaim,
    settled_log,
)


async def _all(backend: Backend, job_id: str | None = None) -> list[Event]:
    return await settled_log(backend, job_id)


async def test_publish_then_read_in_order(backend: Backend, peer: Backend) -> None:
    sent = [
        Event("step.completed", "j1", "step_a", "q", {"n": 1, "nested": {"x": [1, "two"]}}),
        Event("flow.started", data={"run": "r1"}, at=1_700_000_000.5),
        Event("user.created", data={"email": "a@b.c"}),
    ]
    before = await backend.now()
    await backend.publish(sent)
    after = await backend.now()

    got = await settled_log(peer)
    assert [e.type for e in got] == ["step.completed", "flow.started", "user.created"]
    assert (got[0].job_id, got[0].task, got[0].queue) == ("j1", "step_a", "q")
    assert got[0].data == {"n": 1, "nested": {"x": [1, "two"]}}
    assert (got[1].job_id, got[1].task, got[1].queue) == (None, None, None)
    assert got[1].data == {"run": "r1"}
    assert abs(got[1].at - 1_700_000_000.5) < 0.01  # a given time is kept
    assert before - 0.01 <= got[0].at <= after + 0.01  # a missing one is the backend's now
    ids = [e.id for e in got]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


async def test_events_after_cursor_and_paging(backend: Backend) -> None:
    await backend.publish([Event("test.tick", data={"i": i}) for i in range(7)])
    await backend.publish([Event("test.tick", data={"i": 7})])
    await settled_log(backend)

    seen: list[int] = []
    cursor = 0
    while page := await backend.events(after=cursor, limit=3):
        assert len(page) <= 3
        seen.extend(e.data.get("i", -1) for e in page)
        cursor = page[-1].id
    assert seen == [*range(8), -1]  # -1: the marker settled_log wrote
    assert await backend.events(after=cursor) == []

    await backend.publish([Event("test.tick", data={"i": 8})])
    await settled_log(backend)
    fresh = (await backend.events(after=cursor))[0]
    assert fresh.data == {"i": 8}
    assert fresh.id > cursor


async def test_events_empty_log(backend: Backend) -> None:
    assert await backend.events() == []
    await backend.publish([])
    assert await settled_log(backend) == []


async def test_lifecycle_of_a_job_that_retries_then_completes(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new("send", "mail", max_attempts=3))
    lease = await claim_one(backend, queue="mail", worker="w1")
    await backend.update(lease, progress=40)
    await backend.finish([(lease, Outcome("retry", error=error("flaky"), delay=0))])
    lease = await claim_one(backend, queue="mail", worker="w2")
    await backend.finish([(lease, completed("ok"))])

    events = await _all(backend, job_id)
    assert [e.type for e in events] == [
        "job.queued",
        "job.started",
        "job.progress",
        "job.retrying",
        "job.started",
        "job.completed",
    ]
    assert all((e.task, e.queue) == ("send", "mail") for e in events)
    ids = [e.id for e in events]
    assert ids == sorted(ids)
    started = [e for e in events if e.type == "job.started"]
    assert [e.data["attempt"] for e in started] == [1, 2]
    assert [e.data["worker"] for e in started] == ["w1", "w2"]
    assert events[2].data["progress"] == 40
    assert events[3].data["error"]["message"] == "flaky"
    assert events[5].data["attempt"] == 2


async def test_lifecycle_failed(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new("send", "mail"))
    lease = await claim_one(backend, queue="mail")
    await backend.finish([(lease, failed("nope", "KeyError"))])
    events = await _all(backend, job_id)
    assert [e.type for e in events] == ["job.queued", "job.started", "job.failed"]
    assert events[-1].data["error"]["type"] == "KeyError"
    assert events[-1].data["attempt"] == 1
    assert (events[-1].task, events[-1].queue) == ("send", "mail")


async def test_lifecycle_cancelled_queued_and_active(backend: Backend) -> None:
    queued = await enqueue_one(backend, new("send", "mail"))
    await backend.cancel(queued)
    assert [e.type for e in await _all(backend, queued)] == ["job.queued", "job.cancelled"]

    active = await enqueue_one(backend, new("send", "mail"))
    lease = await claim_one(backend, queue="mail")
    await backend.cancel(active)
    assert [e.type for e in await _all(backend, active)] == ["job.queued", "job.started"]
    await backend.finish([(lease, Outcome("cancelled"))])
    events = await _all(backend, active)
    assert [e.type for e in events] == ["job.queued", "job.started", "job.cancelled"]
    assert (events[-1].task, events[-1].queue) == ("send", "mail")


async def test_lifecycle_stalled(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new("send", "mail", max_stalls=1))
    await claim_one(backend, queue="mail", worker="w-dead", lease=SHORT)
    await reclaim(backend, job_id)
    events = await _all(backend, job_id)
    assert [e.type for e in events] == ["job.queued", "job.started", "job.stalled"]
    assert events[-1].data == {"stalls": 1, "worker": "w-dead"}
    assert (events[-1].task, events[-1].queue) == ("send", "mail")

    await claim_one(backend, queue="mail", worker="w-dead-too", lease=SHORT)
    await reclaim(backend, job_id)
    events = await _all(backend, job_id)
    assert [e.type for e in events][3:] == ["job.started", "job.stalled", "job.failed"]
    assert events[-1].data["stalls"] == 2


async def test_lifecycle_retried_by_hand(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    await backend.finish([(lease, failed())])
    await backend.retry(job_id)
    types = [e.type for e in await _all(backend, job_id)]
    assert types == ["job.queued", "job.started", "job.failed", "job.queued"]


async def test_dedup_hit_writes_no_event(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(dedup_key="k"))
    await backend.enqueue([new(dedup_key="k")])
    assert [e.type for e in await _all(backend)] == ["job.queued"]
    assert (await _all(backend))[0].job_id == job_id


async def test_batch_enqueue_writes_one_event_per_job(backend: Backend) -> None:
    reqs = [new() for _ in range(3)]
    await backend.enqueue(reqs)
    events = await _all(backend)
    assert [(e.type, e.job_id) for e in events] == [("job.queued", r.id) for r in reqs]


async def test_lifecycle_cancel_requested_then_worker_died(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new("send", "mail", max_attempts=3))
    await claim_one(backend, queue="mail", worker="w-dead", lease=SHORT)
    await backend.cancel(job_id)
    await reclaim(backend, job_id)
    types = [e.type for e in await _all(backend, job_id)]
    assert types == ["job.queued", "job.started", "job.stalled", "job.cancelled"]
