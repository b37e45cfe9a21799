"""Wait timeouts and timed waits on every backend: a wait's timeout fails the run, goes on
without the signal, or retries (before a step: waits again; after it: runs the step
again); a signal in time cancels the timer; a delay, a cron time or a webhook holds a step
(or its completion) back.

A server store keeps its own clock (Redis ``TIME``, Postgres ``now()``), which no fake
clock moves: the timeouts here are short and real, and "not early" is read from the
store's own timestamps (a timer job starts no sooner than its span after it was written)."""

from __future__ import annotations

from typing import Any

import pytest

from workhorse import Workhorse
from workhorse.flows import FlowFailed
from workhorse.flows.waits import TIMER_TASK

from .support import eventually
from .test_flow_waits import paid_flow, started_apart, waiting_after

SHORT = 0.4  # a timeout a test lets pass
LONG = 600.0  # a timeout no test sees pass
EARLY = 0.005  # store timestamps are rounded (SQLite: milliseconds)


def order_flow(app: Workhorse, flow: str, **wait: Any) -> list[Any]:
    """place -> ship, ship waiting before it for ``paid`` keyed by the order's id."""
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


async def waiting(app: Workhorse, run_id: str) -> Any:
    """The run's view once one of its waits started."""

    async def started() -> bool:
        return bool((await app.flows.get(run_id)).waits)

    await eventually(started, "the run to wait")
    return await app.flows.get(run_id)


async def failure(run: Any) -> dict[str, Any]:
    with pytest.raises(FlowFailed) as failed:
        await run.result(timeout=10)
    assert failed.value.run.waits == []
    error = failed.value.run.error
    assert error is not None
    return dict(error)


async def timers_end(app: Workhorse, span: float, *states: str) -> None:
    """Wait until the app's timer jobs are in ``states`` (a timer's outcome is written
    after the run it ended), each checked to have started no sooner than ``span`` after
    it was written (the store's clock)."""

    async def ended() -> bool:
        jobs = await app.jobs(task=TIMER_TASK)
        for job in jobs:
            if job.started_at is not None:
                held = (job.started_at - job.created_at).total_seconds()
                assert held >= span - EARLY, f"timer {job.id} ran {held:.3f}s after it was set"
        return sorted(str(j.state) for j in jobs) == sorted(states)

    await eventually(ended, f"the timers to end {states}")


async def test_a_timeout_fails_the_run(app: Workhorse) -> None:
    got = order_flow(app, "late", timeout=SHORT)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("late", {"order_id": 1})
    error = await failure(run)
    assert error["message"] == f"wait for signal 'paid' timed out after {SHORT:g}s"
    assert error["type"] == "WaitTimeout"
    assert await app.flows.signal("paid", None, key=1) == 0  # too late: nothing resumes
    assert got == []
    await timers_end(app, SHORT, "completed")


async def test_a_timeout_with_continue_runs_the_step_without_the_signal(app: Workhorse) -> None:
    got = order_flow(app, "lenient", timeout=SHORT, on_timeout="continue")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("lenient", {"order_id": 2})
    assert await run.result(timeout=10) == {"lenient_ship": "shipped"}
    assert got == [{"input": {"order_id": 2}, "signal": None, "timed_out": True}]
    await timers_end(app, SHORT, "completed")


async def test_a_timeout_with_retry_waits_again_until_the_signal(app: Workhorse) -> None:
    """Before a step, ``retry`` waits as long again, under the next timer, each time."""
    got = order_flow(app, "patient", timeout=SHORT, on_timeout="retry")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("patient", {"order_id": 5})

    async def rearmed() -> bool:
        return any(w["timer"] >= 2 for w in await app.flows.engine.waits.pending(run.id))

    await eventually(rearmed, "the wait to be armed a third time")
    assert (await app.flows.get(run.id)).state == "running"
    assert await app.flows.signal("paid", "at last", key=5) == 1
    assert await run.result(timeout=10) == {"patient_ship": "shipped"}
    assert got == [{"input": {"order_id": 5}, "signal": "at last"}]

    async def over() -> bool:  # each timer ran (the wait went on) or the signal cancelled it
        return all(j.state in ("completed", "cancelled") for j in await app.jobs(task=TIMER_TASK))

    await eventually(over, "every timer to have run or been cancelled")
    await timers_end(app, SHORT, *[str(j.state) for j in await app.jobs(task=TIMER_TASK)])


async def test_a_signal_in_time_cancels_the_timer(app: Workhorse) -> None:
    got = order_flow(app, "intime", timeout=LONG)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("intime", {"order_id": 3})
    await waiting(app, run.id)
    assert await app.flows.signal("paid", 1, key=3) == 1
    assert await run.result(timeout=10) == {"intime_ship": "shipped"}
    await timers_end(app, LONG, "cancelled")
    assert len(got) == 1


async def test_a_delay_or_a_cron_time_holds_the_step_back(app: Workhorse) -> None:
    """A delay counts from the step's trigger; an every-second cron time is the next whole
    second of the store's clock after it."""
    for flow, wait in (("later", {"delay": SHORT}), ("ticked", {"cron": "* * * * * *"})):

        @app.task(name=f"{flow}_first", flow=flow, entry=True)
        async def first(data: Any) -> Any:
            return data

        @app.task(name=f"{flow}_second", flow=flow, subscribes=[f"step:{flow}_first"], wait=wait)
        async def second(data: Any) -> Any:
            return data

    await app.start_worker(concurrency=2)
    later, ticked = await app.flows.start("later", 1), await app.flows.start("ticked", 2)
    assert await later.result(timeout=10) == {"later_second": 1}
    assert await started_apart(app, later.id, "later_first", "later_second") >= SHORT - EARLY
    assert await ticked.result(timeout=10) == {"ticked_second": 2}
    (first_step,) = (await app.flows.get(ticked.id)).step("ticked_first")
    assert first_step.started_at is not None
    tick = int(first_step.started_at) + 1 - first_step.started_at
    assert await started_apart(app, ticked.id, "ticked_first", "ticked_second") >= tick - EARLY


def hook_flow(app: Workhorse, flow: str, got: list[Any], timeout: float) -> None:
    """place -> ship, ship waiting before it for a webhook."""

    @app.task(name=f"{flow}_place", flow=flow, entry=True)
    async def place(order: Any) -> Any:
        return order

    @app.task(
        name=f"{flow}_ship",
        flow=flow,
        subscribes=[f"step:{flow}_place"],
        wait={"webhook": {}, "timeout": timeout},
    )
    async def ship(data: Any) -> str:
        got.append(data)
        return "shipped"


async def test_a_webhook_wait_is_resumed_by_its_run_and_step_or_times_out(
    app: Workhorse,
) -> None:
    got: list[Any] = []
    hook_flow(app, "hooked", got, LONG)
    hook_flow(app, "unhooked", got, SHORT)
    await app.start_worker(concurrency=2)
    done, late = await app.flows.start("hooked", 2), await app.flows.start("unhooked", 1)
    (wait,) = (await waiting(app, done.id)).waits
    assert wait["signal"] == "webhook" and wait["key"] == f"{done.id}:0:hooked_ship"
    assert await app.flows.signal("webhook", {"ok": 1}, key=wait["key"]) == 1
    assert await done.result(timeout=10) == {"hooked_ship": "shipped"}
    assert got == [{"input": 2, "signal": {"ok": 1}}]
    error = await failure(late)
    assert error["message"] == f"wait for a webhook timed out after {SHORT:g}s"
    await timers_end(app, SHORT, "cancelled", "completed")


async def test_a_wait_after_a_step_times_out_and_fails_the_run(app: Workhorse) -> None:
    got: list[Any] = []
    paid_flow(app, "after_fail", got, timeout=SHORT)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_fail", {"n": 1})
    error = await failure(run)
    assert error["message"] == f"wait for signal 'paid' timed out after {SHORT:g}s"
    assert await app.flows.signal("paid", None, key="pi-1") == 0
    assert [g[0] for g in got] == ["charge"]
    await timers_end(app, SHORT, "completed")


async def test_a_wait_after_a_step_times_out_and_continues(app: Workhorse) -> None:
    got: list[Any] = []
    paid_flow(app, "after_go", got, timeout=SHORT, on_timeout="continue")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_go", {"n": 2})
    assert await run.result(timeout=10) == {"after_go_ship": "shipped"}
    assert got[1] == ("ship", {"output": {"id": "pi-2"}, "signal": None, "timed_out": True})
    await timers_end(app, SHORT, "completed")


async def test_a_wait_after_a_step_times_out_and_retries_the_step(app: Workhorse) -> None:
    """After a step, ``retry`` runs the step again (from its input), then waits again."""
    got: list[Any] = []
    wait = {"signal": "paid", "key": "id", "timeout": SHORT, "on_timeout": "retry"}

    @app.task(name="again_charge", flow="after_again", entry=True, wait={"after": wait})
    async def charge(order: dict[str, Any]) -> dict[str, Any]:
        got.append(("charge", order))
        if len(got) == 2:  # its second run: the payment comes before its wait starts
            await app.flows.signal("paid", "ok", key="pi-3")
        return {"id": "pi-3"}

    @app.task(name="again_ship", flow="after_again", subscribes=["step:again_charge"])
    async def ship(data: Any) -> str:
        got.append(("ship", data))
        return "shipped"

    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_again", {"n": 3})
    assert await run.result(timeout=10) == {"again_ship": "shipped"}
    assert got == [
        ("charge", {"n": 3}),
        ("charge", {"n": 3}),
        ("ship", {"output": {"id": "pi-3"}, "signal": "ok"}),
    ]
    await timers_end(app, SHORT, "cancelled", "completed")


async def test_a_cron_time_after_a_step_holds_its_completion(app: Workhorse) -> None:
    """An every-second cron: what follows starts at the next whole second of the store's
    clock after the step started, not before."""
    got: list[Any] = []
    paid_flow(app, "after_cron", got, cron="* * * * * *")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_cron", {"n": 4})
    assert await run.result(timeout=10) == {"after_cron_ship": "shipped"}
    assert got[1] == ("ship", {"id": "pi-4"})
    (charge,) = (await app.flows.get(run.id)).step("after_cron_charge")
    assert charge.started_at is not None
    # The next whole second after the wait started, itself after the step started.
    tick = int(charge.started_at) + 1 - charge.started_at
    assert await started_apart(app, run.id, "after_cron_charge", "after_cron_ship") >= (
        tick - EARLY
    )


async def test_a_webhook_after_a_step_resumes_it_apart_from_a_delay_before(
    app: Workhorse,
) -> None:
    got: list[Any] = []

    @app.task(
        name="both_place",
        flow="both",
        entry=True,
        wait={"before": {"delay": SHORT}, "after": {"webhook": {}, "timeout": LONG}},
    )
    async def place(order: Any) -> Any:
        got.append(order)
        return order

    @app.task(name="both_ship", flow="both", subscribes=["step:both_place"])
    async def ship(data: Any) -> Any:
        return data

    await app.start_worker(concurrency=2)
    run = await app.flows.start("both", 1)
    (wait,) = (await waiting_after(app, run.id)).waits
    assert got == [1]
    assert (wait["signal"], wait["key"]) == ("webhook", f"{run.id}:0:both_place:after")
    assert await app.flows.signal("webhook", {"ok": 1}, key=f"{run.id}:0:both_place") == 0
    assert await app.flows.signal("webhook", {"ok": 1}, key=wait["key"]) == 1
    assert await run.result(timeout=10) == {"both_ship": {"output": 1, "signal": {"ok": 1}}}
    info = await app.flows.get(run.id)
    (place_step,) = info.step("both_place")
    assert place_step.started_at is not None
    assert place_step.started_at - info.created_at >= SHORT - EARLY  # held before it ran
