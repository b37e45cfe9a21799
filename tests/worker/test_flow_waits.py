"""Waits before a step, on the fake clock: a signal (matched by its key) resumes the step
with its input and the signal's data, also when it came before the wait started; a
timeout fails the run or goes on without the signal; a delay holds the step back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workhorse import ConfigError, Workhorse
from workhorse.flows import FlowFailed
from workhorse.testing import FakeClock


async def settle(app: Workhorse, run_id: str, state: str = "running") -> Any:
    """Wait (real time) until the run's steps are idle in ``state``."""
    for _ in range(200):
        info = await app.flows.get(run_id)
        if info.state == state and all(s.state in ("completed", "scheduled") for s in info.steps):
            return info
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} did not settle: {await app.flows.get(run_id)}")


def order_flow(app: Workhorse, flow: str, **wait: Any) -> list[Any]:
    got: list[Any] = []

    @app.task(name=f"{flow}_place", flow=flow, entry=True)
    async def place(order: dict[str, Any]) -> dict[str, Any]:
        return order

    @app.task(
        name=f"{flow}_ship",
        flow=flow,
        subscribes=[f"step:{flow}_place"],
        wait={"signal": "paid", "key": "order_id", **wait},
    )
    async def ship(data: dict[str, Any]) -> str:
        got.append(data)
        return "shipped"

    return got


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


async def test_a_timeout_fails_the_run(app: Workhorse, clock: FakeClock) -> None:
    got = order_flow(app, "late", timeout=60)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("late", {"order_id": 1})
    await settle(app, run.id)
    clock.advance(59)
    await asyncio.sleep(0.3)
    assert (await app.flows.get(run.id)).state == "running"
    clock.advance(2)
    with pytest.raises(FlowFailed) as failed:
        await run.result(timeout=5)
    assert failed.value.run.error is not None
    assert failed.value.run.error["message"] == "wait for signal 'paid' timed out after 60s"
    assert failed.value.run.waits == []
    assert await app.flows.signal("paid", None, key=1) == 0  # too late: nothing resumes
    assert got == []
    await app.stop_workers()


async def test_a_timeout_with_continue_runs_the_step_without_the_signal(
    app: Workhorse, clock: FakeClock
) -> None:
    got = order_flow(app, "lenient", timeout=30, on_timeout="continue")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("lenient", {"order_id": 2})
    await settle(app, run.id)
    clock.advance(31)
    assert await run.result(timeout=5) == {"lenient_ship": "shipped"}
    assert got == [{"input": {"order_id": 2}, "signal": None, "timed_out": True}]
    await app.stop_workers()


async def test_a_signal_in_time_cancels_the_timer(app: Workhorse, clock: FakeClock) -> None:
    got = order_flow(app, "intime", timeout=30)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("intime", {"order_id": 3})
    await settle(app, run.id)
    await app.flows.signal("paid", 1, key=3)
    assert await run.result(timeout=5) == {"intime_ship": "shipped"}
    clock.advance(31)
    await asyncio.sleep(0.3)
    assert (await app.flows.get(run.id)).state == "completed"
    assert len(got) == 1
    await app.stop_workers()


async def test_a_delay_holds_the_step_back(app: Workhorse, clock: FakeClock) -> None:
    ran: list[str] = []

    @app.task(name="first", flow="later", entry=True)
    async def first(data: Any) -> Any:
        return data

    @app.task(name="second", flow="later", subscribes=["step:first"], wait={"delay": 600})
    async def second(data: Any) -> Any:
        ran.append("second")
        return data

    await app.start_worker(concurrency=2)
    run = await app.flows.start("later", 1)
    info = await settle(app, run.id)
    assert [s.state for s in info.steps if s.step == "second"] == ["scheduled"]
    assert ran == []
    clock.advance(601)
    assert await run.result(timeout=5) == {"second": 1}
    await app.stop_workers()


async def test_a_webhook_wait_times_out_and_is_resumed_by_its_run_and_step(
    app: Workhorse, clock: FakeClock
) -> None:
    got: list[Any] = []

    @app.task(name="hook_place", flow="hooked", entry=True)
    async def place(order: Any) -> Any:
        return order

    @app.task(
        name="hook_ship",
        flow="hooked",
        subscribes=["step:hook_place"],
        wait={"webhook": {}, "timeout": 60},
    )
    async def ship(data: Any) -> str:
        got.append(data)
        return "shipped"

    await app.start_worker(concurrency=2)
    late, done = await app.flows.start("hooked", 1), await app.flows.start("hooked", 2)
    for run in (late, done):
        await settle(app, run.id)
    (wait,) = (await app.flows.get(done.id)).waits
    assert wait["signal"] == "webhook" and wait["key"] == f"{done.id}:0:hook_ship"
    assert await app.flows.signal("webhook", {"ok": 1}, key=wait["key"]) == 1
    assert await done.result(timeout=5) == {"hook_ship": "shipped"}
    assert got == [{"input": 2, "signal": {"ok": 1}}]
    clock.advance(61)
    with pytest.raises(FlowFailed) as failed:
        await late.result(timeout=5)
    assert failed.value.run.error is not None
    assert failed.value.run.error["message"] == "wait for a webhook timed out after 60s"
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
