"""Waits before a step on the memory backend's fake clock: a signal (matched by its key)
resumes the step, also when it came before the wait started; a retried timeout's timer that
runs again arms nothing more; a long run outlives its purged step records; wait options are
checked. The timeouts themselves run on every backend: tests/contract/test_flow_timeouts.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.contract.test_flow_timeouts import order_flow
from workhorse import ConfigError, Workhorse
from workhorse.flows.waits import TIMER_TASK
from workhorse.testing import FakeClock


async def settle(app: Workhorse, run_id: str, state: str = "running") -> Any:
    """Wait (real time) until the run's steps are idle in ``state``."""
    for _ in range(200):
        info = await app.flows.get(run_id)
        if info.state == state and all(s.state in ("completed", "scheduled") for s in info.steps):
            return info
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} did not settle: {await app.flows.get(run_id)}")


async def test_a_signal_resumes_the_waiting_step_by_key(app: Workhorse) -> None:
    got = order_flow(app, "pay")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("pay", {"order_id": 7})
    info = await settle(app, run.id)
    assert [(w["step"], w["signal"], w["key"]) for w in info.waits] == [("pay_ship", "paid", "7")]
    assert await app.flows.signal("paid", {"amount": 5}, key=8) == 0  # another order
    assert await app.flows.signal("paid", {"amount": 5}, key=7) == 1
    assert await run.result(timeout=5) == {"pay_ship": "shipped"}
    assert got == [{"input": {"order_id": 7}, "signal": {"amount": 5}}]
    types = [e.type for e in await app.flows.events(run.id)]
    assert "step.waiting" in types
    assert "step.resumed" in types
    await app.stop_workers()


async def test_a_signal_that_came_before_the_wait_is_not_lost(app: Workhorse) -> None:
    got = order_flow(app, "early")
    await app.flows.signal("paid", "in advance", key=9)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("early", {"order_id": 9})
    assert await run.result(timeout=5) == {"early_ship": "shipped"}
    assert got == [{"input": {"order_id": 9}, "signal": "in advance"}]
    await app.stop_workers()


def test_wait_options_are_checked() -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match="exactly one of"):
        app.task(lambda: None, name="w", flow="f", entry=True, wait={"delay": 1, "signal": "x"})  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="on_timeout must be one of"):
        bad = {"signal": "x", "on_timeout": "skip"}
        app.task(lambda: None, name="w", flow="f", entry=True, wait=bad)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="unknown"):
        app.task(lambda: None, name="w", flow="f", entry=True, wait={"sleep": 1})  # type: ignore[call-overload]
    for bad_hook, match in (
        ({"webhook": {"secret": "x"}}, "must be a dict with signed"),
        ({"webhook": {"signed": "yes"}}, "signed= must be True or False"),
        ({"webhook": {}, "key": "id"}, "drop key="),
    ):
        with pytest.raises(ConfigError, match=match):
            app.task(lambda: None, name="w", flow="f", entry=True, wait=bad_hook)  # type: ignore[call-overload]


async def test_a_long_run_outlives_its_purged_step_records(
    app: Workhorse, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention removed the record of a finished step of a run that still waits: once
    its index entry is old, the missing record no longer holds the run open."""
    from workhorse.flows import engine

    order_flow(app, "long")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("long", {"order_id": 4})
    await settle(app, run.id)
    clock.advance(10)
    assert await app.purge(states=["completed"], older_than=5) == 1  # the entry step's record
    monkeypatch.setattr(engine, "PURGED_AFTER", 0.0)  # its index entry is old now
    await app.flows.signal("paid", "ok", key=4)
    assert await run.result(timeout=5) == {"long_ship": "shipped"}
    await app.stop_workers()


def timers(waits: list[dict[str, Any]]) -> list[int]:
    """The waits' timer numbers (each retry arms the next)."""
    return [w["timer"] for w in waits]


async def live_timers(app: Workhorse) -> list[Any]:
    return [j for j in await app.jobs(task=TIMER_TASK) if j.state in ("scheduled", "queued")]


async def test_a_retried_timeouts_timer_that_runs_again_arms_nothing_more(
    app: Workhorse, clock: FakeClock
) -> None:
    """Before a step, ``retry`` waits as long again under the next timer, one timer at a
    time; a timer that runs again (at least once) arms nothing more."""
    got = order_flow(app, "patient", timeout=60, on_timeout="retry")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("patient", {"order_id": 5})
    await settle(app, run.id)
    waits = app.flows.engine.waits
    for n in (1, 2):
        (first,) = await live_timers(app)
        clock.advance(61)
        await settle_timer(app, first.id)
        assert (await app.flows.get(run.id)).state == "running"
        assert timers(await waits.pending(run.id)) == [n]
        assert len(await live_timers(app)) == 1
    timer = app.client.registry.get_task(TIMER_TASK)
    await timer.fn(first.data)  # the last timer that ran, run again
    assert timers(await waits.pending(run.id)) == [2]
    assert len(await live_timers(app)) == 1
    assert await app.flows.signal("paid", "at last", key=5) == 1
    assert await run.result(timeout=5) == {"patient_ship": "shipped"}
    assert got == [{"input": {"order_id": 5}, "signal": "at last"}]
    assert await live_timers(app) == []
    await app.stop_workers()


async def settle_timer(app: Workhorse, job_id: str) -> None:
    """Wait (real time) until the timer job ran."""
    for _ in range(200):
        job = await app.get_job(job_id)
        if job is not None and job.state == "completed":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timer {job_id} did not run: {await app.get_job(job_id)}")


def test_waits_before_and_after_are_checked() -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match="inside before= or after="):
        bad = {"after": {"delay": 1}, "delay": 2}
        app.task(lambda: None, name="w", flow="f", entry=True, wait=bad)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="exactly one of"):
        app.task(lambda: None, name="w", flow="f", entry=True, wait={"after": {"key": "id"}})  # type: ignore[call-overload]
    app.task(lambda: None, name="w", flow="f", entry=True, wait={"after": {"signal": "x"}})  # type: ignore[call-overload]
    (step,) = app.flows.graph.tasks["w"]
    assert step.wait is None
    assert step.after is not None and step.after.signal == "x"
