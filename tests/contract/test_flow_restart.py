"""Restarts that race, on every store: two restarts of one run at once (two operators, or
a client resending after a timeout) write one new generation; a restart racing a cancel
or the run's own end leaves the new generation whole."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workhorse import Workhorse
from workhorse.flows import keys, records

from .support import eventually


def chain(app: Workhorse, ran: list[tuple[str, Any]]) -> None:
    """a -> b."""

    @app.task(name="a", flow="chain", entry=True)
    async def a(data: Any) -> Any:
        ran.append(("a", data))
        return data

    @app.task(name="b", flow="chain", subscribes=["step:a"])
    async def b(data: Any) -> Any:
        ran.append(("b", data))
        return data


def together(app: Workhorse, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Hold each restart at its claim until ``n`` restarts read the run: each read the
    same generation, as two requests that arrive together do (not a mock: the store
    answers every call)."""
    backend = app.client.backend
    claim = backend.set_if_absent
    arrived: list[str] = []
    all_in = asyncio.Event()

    async def gated(key: str, *args: Any, **kwargs: Any) -> bool:
        if key.startswith(keys.PREFIX + "restart:"):
            arrived.append(key)
            if len(arrived) >= n:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 10)
        return await claim(key, *args, **kwargs)

    monkeypatch.setattr(backend, "set_if_absent", gated)


async def _started(app: Workhorse, run: str) -> list[int]:
    """The generations of the run's flow.started events."""
    events = await app.flows.events(run)
    return [int(e.data.get("restart", 0)) for e in events if e.type == "flow.started"]


async def test_two_restarts_at_once_write_one_generation(
    app: Workhorse, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[str, Any]] = []
    chain(app, ran)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("chain", 1)
    assert await run.result(timeout=10) == {"b": 1}
    together(app, monkeypatch, 2)
    first, second = await asyncio.gather(app.flows.restart(run.id), app.flows.restart(run.id))
    assert first.id == second.id == run.id
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert await first.result(timeout=10) == {"b": 1}
    rec = await records.load(app.client.backend, run.id)
    assert rec is not None and rec.gen == 1 and rec.state == "completed"
    assert await _started(app, run.id) == [0, 1]
    assert sorted(name for name, _ in ran) == ["a", "a", "b", "b"]
    # The generation's count of live steps reached zero: nothing counted twice.
    assert await app.client.backend.counter_add(keys.count_key(run.id, 1), 0) <= 0


async def test_a_restart_racing_a_cancel_keeps_the_new_generation(app: Workhorse) -> None:
    ran: list[tuple[str, Any]] = []
    chain(app, ran)
    run = await app.flows.start("chain", 2)  # no worker yet: its entry step stays queued
    backend = app.client.backend
    # The cancel reads the run (generation 0, running) and ends it, then the restart
    # writes generation 1 before the cancel cancels the run's steps.
    rec = await records.load(backend, run.id)
    assert rec is not None
    assert await app.flows.engine.end(rec, "cancelled", None)
    again = await app.flows.restart(run.id)
    await app.flows.engine.cancel_jobs(run.id, rec.gen)  # the cancel's last step
    entry = keys.step_job_id(run.id, 1, "a", "entry")
    job = await app.get_job(entry)
    assert job is not None and job.state.value == "queued"
    await app.start_worker(concurrency=2)
    assert await again.result(timeout=10) == {"b": 2}


async def test_two_restarts_racing_a_cancel_write_one_generation(
    app: Workhorse, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[str, Any]] = []
    chain(app, ran)
    run = await app.flows.start("chain", 3)
    together(app, monkeypatch, 2)
    await asyncio.gather(
        app.flows.restart(run.id), app.flows.cancel(run.id), app.flows.restart(run.id)
    )
    rec = await records.load(app.client.backend, run.id)
    assert rec is not None and rec.gen == 1 and rec.state == "running"
    await app.start_worker(concurrency=2)
    assert await app.flows.handle(run.id, "chain").result(timeout=10) == {"b": 3}
    assert await _started(app, run.id) == [0, 1]


async def test_a_restart_after_an_ender_stopped_before_settling(app: Workhorse) -> None:
    # The run's own end raced the restart: its ender set the generation's end marker and
    # had not yet removed the run's live entry nor sent its end event (slow, or killed).
    # The restart settles generation 0 (one end event) before writing generation 1,
    # which then ends with its own.
    ran: list[tuple[str, Any]] = []
    chain(app, ran)
    run = await app.flows.start("chain", 4)
    backend = app.client.backend
    mark = records.end_mark("completed", await backend.now(), None)
    assert await backend.set_if_absent(keys.end_key(run.id, 0), mark)
    again = await app.flows.restart(run.id)
    await app.start_worker(concurrency=2)
    assert await again.result(timeout=10) == {"b": 4}

    async def ends() -> list[str]:
        events = await app.flows.events(run.id)
        return [e.type for e in events if e.type.startswith("flow.") and e.type != "flow.started"]

    assert await eventually(lambda: _two(ends), "both generations' end events") == [
        "flow.completed",
        "flow.completed",
    ]
    assert await backend.kv_get(keys.live_key(run.id)) is None


async def _two(probe: Any) -> list[str] | None:
    found = await probe()
    return found if len(found) >= 2 else None


async def test_a_restart_resent_with_its_key_restarts_once(app: Workhorse) -> None:
    ran: list[tuple[str, Any]] = []
    chain(app, ran)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("chain", 5)
    await run.result(timeout=10)
    first = await app.flows.restart(run.id, key="click-1")
    await first.result(timeout=10)
    resent = await app.flows.restart(run.id, key="click-1")  # after a lost reply
    assert resent.id == run.id and resent.replayed
    rec = await records.load(app.client.backend, run.id)
    assert rec is not None and rec.gen == 1
    again = await app.flows.restart(run.id, key="click-2")  # a new restart
    assert not again.replayed
    await again.result(timeout=10)
    assert await _started(app, run.id) == [0, 1, 2]
