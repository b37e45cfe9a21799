"""enqueue_claimed_with: kv keys set and events published with claimed jobs (a flow run's
start: its record, live entry and flow.started with its entry steps), the jobs' events
after the caller's."""

from __future__ import annotations

from workhorse.backends import Backend, Claim
from workhorse.job import Event, JobState

from .support import claim_one, eventually, must_get, new, settled_log


async def test_keys_events_and_jobs_are_written_in_one_call(backend: Backend) -> None:
    await backend.kv_set("run:r1", "old", ttl=60)
    a, b = new(), new(delay=60)
    started = Event("flow.started", data={"run": "r1", "flow": "f"}, at=1_700_000_000.5)
    out = await backend.enqueue_claimed_with(
        [(Claim(f"idx:{a.id}", "m", unless="end"), a), (Claim(f"idx:{b.id}", "m"), b)],
        {"run:r1": "record", "live:r1": "f"},
        [started],
    )
    assert [(won, r is not None and r.created) for won, r in out] == [(True, True)] * 2
    assert await backend.kv_get("run:r1") == "record"
    assert await backend.kv_get("live:r1") == "f"
    assert await backend.kv_scan("idx:") == {f"idx:{a.id}": "m", f"idx:{b.id}": "m"}
    assert (await must_get(backend, b.id)).state is JobState.SCHEDULED
    assert (await claim_one(backend)).job_id == a.id
    log = [(e.type, e.job_id) for e in await settled_log(backend)]
    assert log[0] == ("flow.started", None)
    assert sorted(log[1:3]) == sorted([("job.queued", a.id), ("job.queued", b.id)])
    (ev,) = await backend.run_events("r1")
    assert (ev.type, ev.data, ev.at) == ("flow.started", started.data, started.at)


async def test_counters_are_added_with_the_jobs(backend: Backend) -> None:
    await backend.counter_add("n:a", 5, ttl=60)
    a = new()
    counters = [("n:a", 2, None), ("n:b", 3, 60.0), ("n:a", 1, None)]
    ((won, res),) = await backend.enqueue_claimed_with(
        [(Claim(f"idx:{a.id}", "m"), a)], {}, [], counters
    )
    assert won is True and res is not None and res.created
    assert await backend.counter_add_many([("n:a", 0, None), ("n:b", 0, None)]) == [8, 3]


async def test_the_keys_are_set_without_a_ttl_and_events_may_be_none(backend: Backend) -> None:
    await backend.kv_set("run:r2", "old", ttl=0.05)
    a = new()
    ((won, res),) = await backend.enqueue_claimed_with(
        [(Claim(f"idx:{a.id}", "m"), a)], {"run:r2": "record"}, []
    )
    assert won is True and res is not None
    assert await backend.kv_scan("run:") == {"run:r2": "record"}  # listed: no ttl
    assert [e.type for e in await settled_log(backend)] == ["job.queued"]


async def test_a_job_refused_by_its_unless_key_still_gets_the_keys(backend: Backend) -> None:
    a = new()
    assert await backend.set_if_absent("end", "cancelled")
    out = await backend.enqueue_claimed_with(
        [(Claim(f"idx:{a.id}", "m", unless="end"), a)], {"run:r3": "record"}, []
    )
    assert out == [(False, None)]
    assert await backend.kv_get("run:r3") == "record"
    assert await backend.get(a.id) is None


async def test_no_jobs_writes_the_keys_and_events(backend: Backend) -> None:
    # A run whose entry waits for a signal: its record, live entry, index keys and
    # flow.started in one call, its entry's wait apart.
    started = Event("flow.started", data={"run": "r2", "flow": "f"}, at=1_700_000_000.5)
    assert (
        await backend.enqueue_claimed_with([], {"run:r2": "rec", "at:1:r2": "f"}, [started]) == []
    )
    assert await backend.kv_scan("run:") == {"run:r2": "rec"}
    assert await backend.kv_get("at:1:r2") == "f"
    # PostgreSQL shows an event once every older transaction has ended: poll.
    (ev,) = await eventually(lambda: backend.run_events("r2"), "the call's event")
    assert (ev.type, ev.data) == ("flow.started", started.data)
