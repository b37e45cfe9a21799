"""Durable event hooks over every backend: listeners of a hook group read the store's event
log, call the app's hooks at least once, in order per job, and keep their cursor in the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from workhorse import JobEvent, Workhorse
from workhorse.backends import Backend, backend_from_url
from workhorse.backends.memory import MemoryBackend
from workhorse.cli.hooks import lag_line
from workhorse.hooks import HookSet, Listener
from workhorse.job import Event, NewJob, new_job_id

from .support import eventually, settled_log

FAST: dict[str, Any] = {
    "lease": 1.5,
    "poll_interval": 0.02,
    "retry_delay": 0.01,
    "attempts": 3,
    "from_start": True,
}


@asynccontextmanager
async def listening(
    app: Workhorse, hooks: HookSet | None = None, wait: bool = True, **options: Any
) -> AsyncIterator[Listener]:
    """A listener running in the background for the test's body, stopped gracefully after
    (``wait``: once it holds a partition)."""
    opts = {**FAST, **options}
    listener = app.listener(**opts) if hooks is None else Listener(app.client, hooks, **opts)
    task = asyncio.create_task(listener.run())
    try:
        if wait:
            await eventually(_holding(listener), "the listener to hold its partitions")
        yield listener
    finally:
        listener.stop()
        await asyncio.wait_for(task, 10)


def _holding(listener: Listener, at_least: int = 1) -> Any:
    async def probe() -> bool:
        return len(listener.held) >= at_least

    return probe


def _count(items: list[Any], n: int) -> Any:
    async def probe() -> bool:
        return len(items) >= n

    return probe


async def test_events_of_one_job_arrive_in_order_with_payload_and_result(
    app: Workhorse,
) -> None:
    tries: dict[int, int] = {}

    @app.task(retries=2, backoff=0.01)
    async def flaky(n: int) -> dict[str, int]:
        tries[n] = tries.get(n, 0) + 1
        if tries[n] < 3:
            raise ValueError(f"try {tries[n]}")
        return {"double": n * 2}

    seen: list[JobEvent] = []

    @app.on("job.*", task="flaky")
    async def record(event: JobEvent) -> None:
        seen.append(event)

    async with listening(app):
        await app.start_worker(concurrency=5)
        handles = [await flaky.enqueue(n) for n in range(12)]
        await eventually(
            lambda: _count([e for e in seen if e.type == "job.completed"], 12)(),
            "12 completions",
            timeout=20,
        )
    for h in handles:
        mine = [e for e in seen if e.job_id == h.id]
        ids = [e.id for e in mine]
        assert ids == sorted(ids)
        kinds = [e.type for e in mine if e.type in ("job.retrying", "job.completed")]
        assert kinds == ["job.retrying", "job.retrying", "job.completed"], (
            tries,
            [(e.type, e.id, e.data) for e in mine],
        )
        retry = next(e for e in mine if e.type == "job.retrying")
        assert retry.error is not None
        assert retry.error["type"] == "ValueError"
        assert retry.error["message"] == "try 1"
        last = mine[-1]
        assert last.type == "job.completed"
        assert last.attempt == 3
        assert last.result == {"double": last.data * 2}
        assert last.task == "flaky"
        assert last.queue == "default"
        assert last.finished_at is not None
        assert last.missing is False


async def test_filters_by_type_task_and_queue_patterns(app: Workhorse) -> None:
    @app.task(queue="priority")
    async def mail_send(x: int) -> int:
        return x

    @app.task
    async def mail_fail(x: int) -> None:
        raise RuntimeError(f"bad {x}")

    @app.task
    async def other(x: int) -> int:
        return x

    got: dict[str, list[tuple[str, str | None]]] = {"mail": [], "failed": [], "prio": []}

    @app.on("job.completed", task="mail_*")
    def on_mail(e: JobEvent) -> None:  # a sync handler (run in a thread)
        got["mail"].append((e.type, e.task))

    @app.on("job.failed")
    async def on_failed(e: JobEvent) -> None:
        got["failed"].append((e.type, e.task))
        assert e.error is not None
        assert e.error["message"].startswith("bad ")
        assert "RuntimeError" in e.error["traceback"]

    @app.on("*", queue="prio*")
    async def on_prio(e: JobEvent) -> None:
        got["prio"].append((e.type, e.task))

    async with listening(app):
        await app.start_worker(queues=["default", "priority"])
        for h in [await mail_send.enqueue(1), await mail_fail.enqueue(2), await other.enqueue(3)]:
            await app.wait(h.id, 10)
        await eventually(_count(got["mail"], 1), "the mail hook")
        await eventually(_count(got["failed"], 1), "the failed hook")
        await eventually(
            lambda: _count([p for p in got["prio"] if p[0] == "job.completed"], 1)(),
            "the queue hook",
        )
        await asyncio.sleep(0.3)  # anything that should not come has had time to
    assert got["mail"] == [("job.completed", "mail_send")]
    assert got["failed"] == [("job.failed", "mail_fail")]
    assert {t for _, t in got["prio"]} == {"mail_send"}


async def test_remove_and_off_unsubscribe(app: Workhorse, backend: Any) -> None:
    a: list[str | None] = []
    b: list[str | None] = []
    c: list[str | None] = []
    handle = app.on("test.ping", lambda e: a.append(e.job_id), name="a")

    @app.on("test.ping", name="b")
    async def hook_b(e: JobEvent) -> None:
        b.append(e.job_id)

    app.on("test.ping", lambda e: c.append(e.job_id), name="c")

    async with listening(app):
        await backend.publish([Event("test.ping", "j1")])
        await eventually(_count(c, 1), "the first ping")
        assert handle.remove() is True
        assert app.off(hook_b) == 1
        await backend.publish([Event("test.ping", "j2")])
        await eventually(_count(c, 2), "the second ping")
    assert a == ["j1"]
    assert b == ["j1"]
    assert c == ["j1", "j2"]
    assert handle.remove() is False


async def test_failing_hook_is_retried_then_parked_then_replayed(
    app: Workhorse, backend: Any
) -> None:
    calls: list[str | None] = []
    broken = {"on": True}
    after: list[str | None] = []

    @app.on("test.order", name="save_order")
    async def save(e: JobEvent) -> None:
        calls.append(e.job_id)
        if broken["on"] and e.job_id == "bad":
            raise ConnectionError("db down")
        after.append(e.job_id)

    async with listening(app, attempts=3):
        await backend.publish(
            [Event("test.order", "ok1"), Event("test.order", "bad"), Event("test.order", "ok2")]
        )
        await eventually(_count(after, 2), "the events after the failing one")
    assert calls.count("bad") == 3  # three attempts, then parked; the log went on
    assert after == ["ok1", "ok2"]

    parked = await app.hooks.parked()
    assert [(p.hook, p.event.job_id) for p in parked] == [("save_order", "bad")]
    assert parked[0].error["type"] == "ConnectionError"
    assert parked[0].error["message"] == "db down"
    assert parked[0].attempts == 3
    status = await app.hooks.lag()
    assert status.parked == 1

    with pytest.raises(ConnectionError):
        await app.hooks.replay(parked[0].id)  # still broken: stays parked
    assert len(await app.hooks.parked()) == 1

    broken["on"] = False
    await app.hooks.replay(parked[0].id)
    assert after == ["ok1", "ok2", "bad"]
    assert await app.hooks.parked() == []


async def test_cursor_survives_a_listener_restart(app: Workhorse, backend: Any) -> None:
    got: list[str | None] = []
    app.on("test.n", lambda e: got.append(e.job_id), name="n")
    async with listening(app):
        await backend.publish([Event("test.n", f"a{i}") for i in range(20)])
        await eventually(_count(got, 20), "the first 20")
    await backend.publish([Event("test.n", f"b{i}") for i in range(15)])  # nobody listens
    async with listening(app):  # a new listener of the same group, from its saved cursor
        await eventually(_count(got, 35), "the 15 written while stopped")
        await asyncio.sleep(0.2)
    # Order holds per job (partitions run side by side); each event came exactly once.
    assert sorted(got[:20]) == sorted(f"a{i}" for i in range(20))
    assert sorted(got[20:]) == sorted(f"b{i}" for i in range(15))


async def test_a_new_group_starts_at_the_end_of_the_log(app: Workhorse, backend: Any) -> None:
    got: list[str | None] = []
    app.on("test.n", lambda e: got.append(e.job_id), name="n")
    await backend.publish([Event("test.n", f"old{i}") for i in range(5)])
    # The end of the settled log: on PostgreSQL a transaction in flight anywhere on the
    # server holds the head below it, so that no event committed later is skipped.
    await settled_log(backend)
    async with listening(app, group="fresh", from_start=False):
        await backend.publish([Event("test.n", "new")])
        await eventually(_count(got, 1), "the new event")
        await asyncio.sleep(0.2)
    assert got == ["new"]


async def test_two_listeners_of_one_group_split_the_events(app: Workhorse, backend: Any) -> None:
    total = 10_000
    seen_a: list[str | None] = []
    seen_b: list[str | None] = []
    hooks_a, hooks_b = HookSet(), HookSet()
    hooks_a.add("test.split", lambda e: seen_a.append(e.job_id), name="h")
    hooks_b.add("test.split", lambda e: seen_b.append(e.job_id), name="h")
    hooks_a.add("test.split", _noop, name="h2")  # the async path too
    async with (
        listening(app, hooks_a, partitions=8) as first,
        listening(app, hooks_b, partitions=8) as second,
    ):
        await eventually(
            lambda: _split(first, second), "both listeners to hold 4 partitions", timeout=10
        )
        ids = [new_job_id() for _ in range(total)]
        for start in range(0, total, 500):
            await backend.publish(
                [Event("test.split", i, "t", "q") for i in ids[start : start + 500]]
            )
        await eventually(
            lambda: _count(seen_a + seen_b, total)(), f"{total} deliveries", timeout=30
        )
        await asyncio.sleep(0.2)
    assert sorted(seen_a + seen_b) == sorted(ids)  # none lost, none twice
    assert seen_a
    assert seen_b
    assert not set(seen_a) & set(seen_b)


async def _noop(e: JobEvent) -> None:
    return None


async def _split(first: Listener, second: Listener) -> bool:
    return len(first.held) == 4 and len(second.held) == 4


async def test_get_many_returns_the_records_that_exist(app: Workhorse) -> None:
    @app.task(queue="priority")
    async def a(n: int) -> int:
        return n

    @app.task
    async def b(n: int) -> int:
        return n

    ids = [(await a.enqueue(1)).id, (await b.enqueue(2)).id]
    got = await app.client.get_jobs([*ids, new_job_id()])  # one id no job has
    assert set(got) == set(ids)
    assert {got[i].data for i in ids} == {1, 2}


async def test_a_hook_slower_than_the_lease_keeps_its_partition(
    app: Workhorse, backend: Any
) -> None:
    calls: list[str | None] = []
    hooks_a, hooks_b = HookSet(), HookSet()

    async def slow(e: JobEvent) -> None:
        calls.append(e.job_id)
        await asyncio.sleep(1.5)  # three leases of 0.5 s

    hooks_a.add("test.slow", slow, name="slow")
    hooks_b.add("test.slow", slow, name="slow")
    async with listening(app, hooks_a, lease=0.5, partitions=1) as first:
        await backend.publish([Event("test.slow", "j1")])
        await eventually(_count(calls, 1), "the slow hook to start")
        async with listening(app, hooks_b, lease=0.5, partitions=1, wait=False):
            await asyncio.sleep(2.0)  # the second listener would take an expired lease
        assert first.held == [0]
    assert calls == ["j1"]  # renewed while the hook ran: no second delivery


async def test_lag_counts_unread_events_and_their_age(app: Workhorse, backend: Any) -> None:
    from workhorse import ConfigError

    with pytest.raises(ConfigError, match="no hook group 'app'"):
        await app.hooks.lag()
    got: list[str | None] = []
    app.on("test.lag", lambda e: got.append(e.job_id), name="lag")
    async with listening(app):
        await backend.publish([Event("test.lag", "a")])
        await eventually(_count(got, 1), "the first event")
    caught_up = await app.hooks.lag()
    assert (caught_up.behind, caught_up.oldest_unread_age) == (0, None)
    await backend.publish([Event("test.lag", f"b{i}") for i in range(7)])
    await asyncio.sleep(0.3)
    behind = await eventually(lambda: _behind(app, 7), "the lag to count the unread events")
    assert behind.behind == 7
    assert behind.oldest_unread_age is not None
    assert behind.oldest_unread_age >= 0.2
    assert behind.listeners == 0  # the listener left
    assert [s.group for s in await app.hooks.status()] == ["app"]


async def _behind(app: Workhorse, n: int) -> Any:
    status = await app.hooks.lag()
    return status if status.behind == n else None


def _small_log(kind: str, url: str, max_events: int) -> Backend:
    """Another view of the test's store whose event log keeps about ``max_events``."""
    if kind == "memory":
        return MemoryBackend(max_events=max_events)
    return backend_from_url(f"{url}{'&' if '?' in url else '?'}max_events={max_events}")


async def test_events_trimmed_before_the_group_read_them_are_reported_lost(
    backend_kind: str, store_url: str, backend: Any
) -> None:
    small = _small_log(backend_kind, store_url, 100)
    app = Workhorse(backend=small)
    await app.open()
    try:
        got: list[str | None] = []
        app.on("test.trim", lambda e: got.append(e.job_id), name="trim")
        async with listening(app):
            await small.publish([Event("test.trim", f"a{i}") for i in range(10)])
            await eventually(_count(got, 10), "the first events")
        assert (await app.hooks.lag()).lost_incidents == 0
        for start in range(0, 3000, 500):  # the listener is down: the log trims them
            await small.publish([Event("test.trim", f"b{start + i}") for i in range(500)])
        sweep = getattr(small, "sweep", None)
        if sweep is not None:
            await sweep()  # PostgreSQL bounds its log in a periodic sweep
        async with listening(app):
            # Some delivered first: on PostgreSQL a transaction in flight anywhere on the
            # server holds every reader back a moment, the lag's too (it reads 0 meanwhile).
            await eventually(_count(got, 11), "the retained tail", timeout=20)
            await eventually(lambda: _behind(app, 0), "the listener to catch up", timeout=20)
        status = await app.hooks.lag()
        delivered = len(got) - 10
        assert 0 < delivered < 3000  # the retained tail was delivered, the rest trimmed
        assert status.lost_incidents == 1
        if backend_kind.startswith(("redis", "postgres")):
            # Redis's ids are times, PostgreSQL's positions (xid, id): the count is unknown.
            assert status.lost_events is None
        else:
            assert status.lost_events is not None
            assert status.lost_events >= 3000 - delivered  # at most: an upper bound
        text = " ".join(lag_line(status).split())
        assert "LOST" in text
    finally:
        await app.close()


async def test_the_log_keeps_the_queued_events_of_a_producer_that_enqueued_before_the_hold(
    backend_kind: str, store_url: str, backend: Any
) -> None:
    # The producer enqueued (and so set up its calls) before any hook group held the log:
    # from the moment it knows of the hold its enqueues must keep what the group has not read.
    small = _small_log(backend_kind, store_url, 200)
    app = Workhorse(backend=small)
    await app.open()
    try:
        await small.enqueue([NewJob(new_job_id(), "t", "q", b"null")])
        got: list[str | None] = []
        app.on("job.queued", lambda e: got.append(e.job_id), name="held")
        async with listening(app):  # a new group starts at the end of the log
            await small.enqueue([NewJob(new_job_id(), "t", "q", b"null")])
            await eventually(_count(got, 1), "the first job's event")
        sweep = getattr(small, "sweep", None)
        if sweep is not None:
            await sweep()  # Redis learns of the hold here (else within 10 s)
        sent = []
        for _ in range(600):  # past max_events, under the bound: kept for the group
            (res,) = await small.enqueue([NewJob(new_job_id(), "t", "q", b"null")])
            sent.append(res.id)
        if sweep is not None:
            await sweep()
        before = len(got)
        async with listening(app):
            await eventually(_count(got, before + 600), "the 600 held events", timeout=20)
        assert set(sent) <= set(got)
        assert (await app.hooks.lag()).lost_incidents == 0
    finally:
        await app.close()


async def test_the_log_keeps_what_a_stopped_group_has_not_read(
    backend_kind: str, store_url: str, backend: Any
) -> None:
    small = _small_log(backend_kind, store_url, 200)  # keeps 200, up to 2,000 held
    app = Workhorse(backend=small)
    await app.open()
    try:
        got: list[str | None] = []
        app.on("test.hold", lambda e: got.append(e.job_id), name="hold")
        async with listening(app):
            await small.publish([Event("test.hold", "first")])
            await eventually(_count(got, 1), "the first event")
        sweep = getattr(small, "sweep", None)
        if sweep is not None:
            await sweep()  # Redis learns of the hold here (else within 10 s)
        sent = [f"b{i}" for i in range(600)]
        for start in range(0, 600, 200):
            await small.publish([Event("test.hold", j) for j in sent[start : start + 200]])
        for _ in range(2):  # past max_events, under the bound: trimmed but for the hold
            await small.publish([Event("test.other") for _ in range(650)])
        if sweep is not None:
            await sweep()
        async with listening(app):
            await eventually(_count(got, 601), "the 600 held events", timeout=20)
        assert sorted(got[1:]) == sorted(sent)
        assert (await app.hooks.lag()).lost_incidents == 0
        assert await app.hooks.forget("app") >= 1
        assert await app.hooks.groups() == []
    finally:
        await app.close()
