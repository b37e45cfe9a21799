"""A run's start: its record, live entry, flow.started, count of live steps (a counted
flow) and entry jobs go in one store call after the clock's read
(``Backend.enqueue_claimed_with``); a flow whose entry waits for a signal writes its
entry jobs apart."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from workhorse import Workhorse
from workhorse.backends import Backend
from workhorse.flows import keys

from .support import eventually, line_flow

_CALLS = ("now", "counter_add", "kv_set", "publish", "enqueue_claimed", "enqueue_claimed_with")


def _count_calls(backend: Backend) -> list[str]:
    """The caller's store calls by name, not those one makes of another (a default's),
    nor those of tasks started before, such as a worker's running the app's steps."""
    calls: list[str] = []
    inside: contextvars.ContextVar[bool] = contextvars.ContextVar("inside", default=False)
    mine: contextvars.ContextVar[bool] = contextvars.ContextVar("mine", default=False)
    mine.set(True)  # in the caller's context, and the tasks it starts from now on

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any) -> Any:
            if inside.get() or not mine.get():
                return await real(*args)
            calls.append(name)
            token = inside.set(True)
            try:
                return await real(*args)
            finally:
                inside.reset(token)

        return counted

    for name in _CALLS:
        setattr(backend, name, wrap(name, getattr(backend, name)))
    return calls


def _uncount(backend: Backend) -> None:
    for name in _CALLS:
        delattr(backend, name)


async def _started(app: Workhorse, flow: str, data: Any) -> tuple[list[str], Any]:
    """A run of ``flow`` started, and the store calls its start made, by name."""
    calls = _count_calls(app.backend)
    try:
        return calls, await app.flows.start(flow, data)
    finally:
        _uncount(app.backend)


async def _events_now(app: Workhorse, run_id: str) -> list[Any]:
    """The run's events once its first is readable."""
    return await eventually(lambda: app.flows.events(run_id), f"run {run_id}'s first event")


async def test_a_start_is_the_clock_and_one_write(app: Workhorse) -> None:
    line_flow(app, 2)
    await app.flows.start("line", 0)  # the store opened, its queues listed
    calls, run = await _started(app, "line", 1)
    assert calls == ["now", "enqueue_claimed_with"]
    info = await run.info()
    assert (info.state, info.input) == ("running", 1)
    assert [(s.step, s.state) for s in info.steps] == [("s1", "queued")]
    # Redis reads a run's events below the server's current millisecond (so a reader that
    # resumes after an id misses none): an event is readable from the next one.
    assert [e.type for e in await _events_now(app, run.id)] == ["flow.started"]
    assert await app.backend.kv_get(keys.live_key(run.id)) == "line"
    await app.start_worker(concurrency=2)
    assert (await run.result(timeout=10)) == {"s2": 3}


async def test_a_counted_start_adds_its_count_with_its_entry(app: Workhorse) -> None:
    @app.task(name="root", flow="fork", entry=True)
    async def root(n: int) -> int:
        return n

    for name in ("left", "right"):

        async def leaf(n: int) -> int:
            return n + 1

        app.add_task(leaf, name=name, flow="fork", subscribes=["step:root"])
    assert app.flows["fork"].counted()
    await app.flows.start("fork", 0)
    calls, run = await _started(app, "fork", 1)
    assert calls == ["now", "enqueue_claimed_with"]
    assert await app.backend.counter_add(keys.count_key(run.id, 0), 0) == 1
    await app.start_worker(concurrency=4)
    assert (await run.result(timeout=10)) == {"left": 2, "right": 2}


async def test_an_entry_waiting_for_a_signal_starts_apart(app: Workhorse) -> None:
    @app.task(name="gate", flow="gated", entry=True, wait={"signal": "open"})
    async def gate(data: Any) -> Any:
        return data["signal"]

    await app.start_worker(concurrency=2)
    calls, run = await _started(app, "gated", 1)
    # The record, live entry, index keys and flow.started together; its entry apart.
    assert calls[:2] == ["now", "enqueue_claimed_with"]
    assert "enqueue_claimed_with" not in calls[2:]
    assert [e.type for e in await _events_now(app, run.id)][:1] == ["flow.started"]

    async def waiting() -> bool:
        return (await run.info()).waiting

    await eventually(waiting, "the entry waiting for its signal")
    assert await app.flows.signal("open", 5) == 1
    assert (await run.result(timeout=10)) == {"gate": 5}


async def test_an_entry_at_a_cron_time_is_due_from_the_starts_clock(app: Workhorse) -> None:
    @app.task(name="tick", flow="ticking", entry=True, wait={"cron": "* * * * * *"})
    async def tick(data: Any) -> Any:
        return data

    await app.flows.start("ticking", 0)
    calls, run = await _started(app, "ticking", 1)
    assert calls == ["now", "enqueue_claimed_with"]
    info = await run.info()
    (step,) = info.steps
    job = await app.get_job(step.job_id)
    assert job is not None
    assert job.run_at.timestamp() == int(info.created_at) + 1  # the next whole second


async def _restarted(app: Workhorse, run_id: str) -> tuple[list[str], Any]:
    """The run restarted, and the store calls its restart made, by name."""
    calls = _count_calls(app.backend)
    try:
        return calls, await app.flows.restart(run_id)
    finally:
        _uncount(app.backend)


async def test_a_restart_writes_its_generation_in_one_call(app: Workhorse) -> None:
    line_flow(app, 2)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("line", 1)
    assert (await run.result(timeout=10)) == {"s2": 3}

    async def ended() -> bool:  # the worker's publish of it (Redis Cluster's) is done
        return "flow.completed" in [e.type for e in await app.flows.events(run.id)]

    await eventually(ended, "the run's flow.completed to be stored")
    calls, again = await _restarted(app, run.id)
    # Then its former index keys go (kv_delete): meanwhile the worker may run the new
    # generation's first step, whose calls Redis Cluster makes apart from its finish.
    assert calls[:2] == ["now", "enqueue_claimed_with"]
    assert again.id == run.id
    assert (await again.result(timeout=10)) == {"s2": 3}
    events = [e.type for e in await app.flows.events(run.id)]
    assert events.count("flow.started") == 2


async def test_a_running_counted_run_restarts_in_one_write(app: Workhorse) -> None:
    @app.task(name="root", flow="fork", entry=True)
    async def root(n: int) -> int:
        return n

    for name in ("left", "right"):

        async def leaf(n: int) -> int:
            return n + 1

        app.add_task(leaf, name=name, flow="fork", subscribes=["step:root"])
    run = await app.flows.start("fork", 1)  # no worker yet: its entry stays queued
    calls, again = await _restarted(app, run.id)
    # The old generation's end (its retention entry filed, then flow.cancelled) first.
    assert calls == ["kv_set", "publish", "now", "enqueue_claimed_with"]
    assert await app.backend.counter_add(keys.count_key(run.id, 1), 0) == 1
    await app.start_worker(concurrency=4)
    assert (await again.result(timeout=10)) == {"left": 2, "right": 2}
    assert [s.state for s in (await again.info()).steps if s.step == "root"] == ["completed"]


async def test_an_entry_waiting_for_a_signal_restarts_apart(app: Workhorse) -> None:
    @app.task(name="gate", flow="gated", entry=True, wait={"signal": "open"})
    async def gate(data: Any) -> Any:
        return data["signal"]

    await app.start_worker(concurrency=2)
    run = await app.flows.start("gated", 1)
    calls, again = await _restarted(app, run.id)
    # Its record, live entry, index keys and flow.started together; its entry apart.
    assert calls.count("enqueue_claimed_with") == 1
    assert calls.index("enqueue_claimed_with") == calls.index("now") + 1

    async def waiting() -> bool:
        return (await again.info()).waiting

    await eventually(waiting, "the new generation's entry waiting for its signal")
    assert await app.flows.signal("open", 5) == 1
    assert (await again.result(timeout=10)) == {"gate": 5}
