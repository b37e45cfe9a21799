"""Waits before and after a step, on the fake clock: a signal (matched by its key) resumes
the step with its input (or, after it, its completion with its output) and the signal's
data, also when it came before the wait started; a timeout fails the run, goes on without
the signal, or retries (before: waits again; after: runs the step again); a delay or a cron
time holds the step, or its completion, back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workhorse import ConfigError, Workhorse
from workhorse.flows import FlowFailed
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


def timers(waits: list[dict[str, Any]]) -> list[int]:
    """The waits' timer numbers (each retry arms the next)."""
    return [w["timer"] for w in waits]


async def live_timers(app: Workhorse) -> list[Any]:
    return [j for j in await app.jobs(task=TIMER_TASK) if j.state in ("scheduled", "queued")]


async def test_a_timeout_with_retry_waits_again_once_per_timeout(
    app: Workhorse, clock: FakeClock
) -> None:
    """Before a step, ``retry`` waits as long again under the next timer; a timer that
    runs again (at least once) arms nothing more."""
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


def charge_flow(app: Workhorse, flow: str, **after: Any) -> list[Any]:
    """charge, waiting after it (by default for ``paid`` keyed by its output's id) -> ship."""
    got: list[Any] = []
    wait = (
        after
        if {"delay", "cron", "webhook"} & set(after)
        else {"signal": "paid", "key": "id", **after}
    )

    @app.task(name=f"{flow}_charge", flow=flow, entry=True, wait={"after": wait})
    async def charge(order: dict[str, Any]) -> dict[str, Any]:
        got.append(("charge", order))
        return {"id": f"pi-{order['n']}", "try": len(got)}

    @app.task(name=f"{flow}_ship", flow=flow, subscribes=[f"step:{flow}_charge"])
    async def ship(data: Any) -> str:
        got.append(("ship", data))
        return "shipped"

    return got


async def test_a_wait_after_a_step_times_out_and_fails_the_run(
    app: Workhorse, clock: FakeClock
) -> None:
    got = charge_flow(app, "after_fail", timeout=60)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_fail", {"n": 1})
    info = await settle(app, run.id)
    assert info.waiting
    clock.advance(59)
    await asyncio.sleep(0.3)
    assert (await app.flows.get(run.id)).waiting
    clock.advance(2)
    with pytest.raises(FlowFailed) as failed:
        await run.result(timeout=5)
    assert failed.value.run.error is not None
    assert failed.value.run.error["message"] == "wait for signal 'paid' timed out after 60s"
    assert failed.value.run.waits == []
    assert await app.flows.signal("paid", None, key="pi-1") == 0
    assert [g[0] for g in got] == ["charge"]
    await app.stop_workers()


async def test_a_wait_after_a_step_times_out_and_continues(
    app: Workhorse, clock: FakeClock
) -> None:
    got = charge_flow(app, "after_go", timeout=30, on_timeout="continue")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_go", {"n": 2})
    await settle(app, run.id)
    clock.advance(31)
    assert await run.result(timeout=5) == {"after_go_ship": "shipped"}
    assert got[1] == (
        "ship",
        {"output": {"id": "pi-2", "try": 1}, "signal": None, "timed_out": True},
    )
    await app.stop_workers()


async def test_a_wait_after_a_step_times_out_and_retries_the_step(
    app: Workhorse, clock: FakeClock
) -> None:
    """After a step, ``retry`` runs the step again (from its input), then waits again."""
    got = charge_flow(app, "after_again", timeout=30, on_timeout="retry")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_again", {"n": 3})
    await settle(app, run.id)
    clock.advance(31)
    for _ in range(200):
        info = await app.flows.get(run.id)
        if len(info.steps) == 2 and info.waiting:
            break
        await asyncio.sleep(0.02)
    assert [s.state for s in info.steps] == ["completed", "completed"]
    assert [g for g in got] == [("charge", {"n": 3}), ("charge", {"n": 3})]
    assert len(info.waits) == 1
    assert await app.flows.signal("paid", "ok", key="pi-3") == 1
    assert await run.result(timeout=5) == {"after_again_ship": "shipped"}
    assert got[2:] == [("ship", {"output": {"id": "pi-3", "try": 2}, "signal": "ok"})]
    await app.stop_workers()


async def test_a_delay_and_a_cron_time_after_a_step(app: Workhorse, clock: FakeClock) -> None:
    clock.set((clock() // 86_400 + 1) * 86_400)  # midnight UTC: 9:00 is 9 hours off
    delayed = charge_flow(app, "after_delay", delay=600)
    timed = charge_flow(app, "after_cron", cron="0 9 * * *")
    await app.start_worker(concurrency=2)
    runs = [await app.flows.start(f, {"n": 4}) for f in ("after_delay", "after_cron")]
    for run in runs:
        assert (await settle(app, run.id)).waiting
    clock.advance(601)
    assert await runs[0].result(timeout=5) == {"after_delay_ship": "shipped"}
    assert delayed[1] == ("ship", {"id": "pi-4", "try": 1})
    assert (await app.flows.get(runs[1].id)).waiting  # 9:00 is further off than 10 min
    clock.advance(86_400)
    assert await runs[1].result(timeout=5) == {"after_cron_ship": "shipped"}
    assert [g[0] for g in timed] == ["charge", "ship"]
    await app.stop_workers()


async def test_a_webhook_after_a_step_resumes_it_apart_from_a_wait_before(
    app: Workhorse, clock: FakeClock
) -> None:
    got: list[Any] = []

    @app.task(
        name="both_place",
        flow="both",
        entry=True,
        wait={"before": {"delay": 10}, "after": {"webhook": {}, "timeout": 60}},
    )
    async def place(order: Any) -> Any:
        got.append(order)
        return order

    @app.task(name="both_ship", flow="both", subscribes=["step:both_place"])
    async def ship(data: Any) -> Any:
        return data

    await app.start_worker(concurrency=2)
    run = await app.flows.start("both", 1)
    await settle(app, run.id)
    assert got == []  # held before it runs
    clock.advance(11)
    for _ in range(200):
        if (await app.flows.get(run.id)).waiting and got:
            break
        await asyncio.sleep(0.02)
    (wait,) = (await app.flows.get(run.id)).waits
    assert (wait["signal"], wait["key"]) == ("webhook", f"{run.id}:0:both_place:after")
    assert await app.flows.signal("webhook", {"ok": 1}, key=f"{run.id}:0:both_place") == 0
    assert await app.flows.signal("webhook", {"ok": 1}, key=wait["key"]) == 1
    assert await run.result(timeout=5) == {"both_ship": {"output": 1, "signal": {"ok": 1}}}
    await app.stop_workers()


async def test_a_run_waiting_on_a_timer_is_not_stalled(app: Workhorse, clock: FakeClock) -> None:
    charge_flow(app, "after_idle", timeout=3600)
    app.flows.define("after_idle", stall_timeout=60)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_idle", {"n": 5})
    await settle(app, run.id)
    clock.advance(600)
    await app.flows.engine.sweep()
    info = await app.flows.get(run.id)
    assert (info.state, info.waiting, info.stalled_at) == ("running", True, None)
    assert "flow.stalled" not in [e.type for e in await app.flows.events(run.id)]
    await app.stop_workers()


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
