"""Waits after a step, on every backend: the step's completion fires its subscribers only
once its wait is over; meanwhile the run waits (running, the step completed, nothing
after it started). A step that runs twice arms one wait, a signal sent before the wait
starts is kept, and cancelling the run drops the wait."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from workhorse import Workhorse
from workhorse.flows import FlowFailed
from workhorse.flows.waits import TIMER_TASK
from workhorse.job import Outcome

from .support import claim_one, completed, eventually


def paid_flow(app: Workhorse, flow: str, got: list[Any], **wait: Any) -> None:
    """charge (waits after it, by default for ``paid`` keyed by the output's id) -> ship."""
    if not {"delay", "cron", "webhook"} & set(wait):
        wait = {"signal": "paid", "key": "id", **wait}

    @app.task(name=f"{flow}_charge", flow=flow, entry=True, wait={"after": wait})
    async def charge(order: dict[str, Any]) -> dict[str, Any]:
        got.append(("charge", order))
        return {"id": f"pi-{order['n']}"}

    @app.task(name=f"{flow}_ship", flow=flow, subscribes=[f"step:{flow}_charge"])
    async def ship(data: dict[str, Any]) -> str:
        got.append(("ship", data))
        return "shipped"


async def waiting_after(app: Workhorse, run_id: str) -> Any:
    """The run's view once its first step completed and waits after it."""

    async def done() -> bool:
        info = await app.flows.get(run_id)
        return info.waiting and [s.state for s in info.steps] == ["completed"]

    await eventually(done, "the step to complete and wait after it")
    return await app.flows.get(run_id)


async def started_apart(app: Workhorse, run_id: str, first: str, then: str) -> float:
    """Seconds from the start of step ``first`` to the start of step ``then`` (the store's
    clock)."""
    steps = {s.step: s for s in (await app.flows.get(run_id)).steps}
    began, later = steps[first].started_at, steps[then].started_at
    assert began is not None and later is not None
    return later - began


async def ended_events(app: Workhorse, run_id: str) -> list[Any]:
    """The run's events once its end is among them (a store may show its newest events a
    moment after they were written)."""

    async def ended() -> bool:
        ends = ("flow.completed", "flow.failed", "flow.cancelled")
        return any(e.type in ends for e in await app.flows.events(run_id))

    await eventually(ended, "the run's end in its events")
    return await app.flows.events(run_id)


async def test_a_wait_after_a_step_holds_its_completion_until_the_signal(
    app: Workhorse,
) -> None:
    got: list[Any] = []
    paid_flow(app, "after_sig", got)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_sig", {"n": 1})
    info = await waiting_after(app, run.id)
    assert info.state == "running"
    assert info.stalled_at is None
    assert [(w["step"], w["phase"], w["signal"], w["key"]) for w in info.waits] == [
        ("after_sig_charge", "after", "paid", "pi-1")
    ]
    assert await app.flows.engine.check(run.id) is None  # not over while it waits
    assert await app.flows.signal("paid", {"amount": 9}, key="pi-2") == 0  # another payment
    assert await app.flows.signal("paid", {"amount": 9}, key="pi-1") == 1
    assert await run.result(timeout=10) == {"after_sig_ship": "shipped"}
    assert got == [
        ("charge", {"n": 1}),
        ("ship", {"output": {"id": "pi-1"}, "signal": {"amount": 9}}),
    ]
    events = [(e.type, e.data.get("phase")) for e in await ended_events(app, run.id)]
    assert events.count(("step.waiting", "after")) == 1
    assert [t for t, _ in events].count("step.resumed") == 1
    assert (await app.flows.get(run.id)).waits == []


async def test_a_signal_before_the_wait_after_starts_is_not_lost(app: Workhorse) -> None:
    got: list[Any] = []
    paid_flow(app, "after_early", got)
    await app.flows.signal("paid", "in advance", key="pi-2")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_early", {"n": 2})
    assert await run.result(timeout=10) == {"after_early_ship": "shipped"}
    assert got[1] == ("ship", {"output": {"id": "pi-2"}, "signal": "in advance"})


async def test_a_step_that_runs_twice_arms_one_wait_after_it(app: Workhorse) -> None:
    """At least once: the step's handler returned, its wait started, and its worker died
    before the outcome was written; the step runs again (here by hand, on the same
    lease). One wait, one timer, one start of what follows."""
    got: list[Any] = []
    paid_flow(app, "after_twice", got, timeout=600)
    run = await app.flows.start("after_twice", {"n": 3})
    backend = app.client.backend
    lease = await claim_one(backend, "default")

    async def attempt() -> Outcome:
        return completed({"id": "pi-3"})

    for _ in range(2):
        outcome = await app.flows.engine.run(lease, SimpleNamespace(), attempt)
        assert outcome.kind == "completed"
    info = await app.flows.get(run.id)
    assert [(w["step"], w["phase"]) for w in info.waits] == [("after_twice_charge", "after")]
    timers = [j for j in await app.jobs(task=TIMER_TASK) if j.state == "scheduled"]
    assert len(timers) == 1
    assert await backend.finish([(lease, outcome)]) == [True]
    await app.start_worker(concurrency=2)
    assert await app.flows.signal("paid", "ok", key="pi-3") == 1
    assert await run.result(timeout=10) == {"after_twice_ship": "shipped"}
    assert [g for g in got if g[0] == "ship"] == [
        ("ship", {"output": {"id": "pi-3"}, "signal": "ok"})
    ]
    assert [j.state for j in await app.jobs(task=TIMER_TASK)] == ["cancelled"]
    waiting = [e for e in await ended_events(app, run.id) if e.type == "step.waiting"]
    assert len(waiting) == 1


async def test_cancel_drops_a_wait_after_a_step(app: Workhorse) -> None:
    got: list[Any] = []
    paid_flow(app, "after_cancel", got, timeout=600)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_cancel", {"n": 4})
    await waiting_after(app, run.id)
    assert await app.flows.cancel(run.id)
    info = await app.flows.get(run.id)
    assert (info.state, info.waits, info.waiting) == ("cancelled", [], False)
    assert [j.state for j in await app.jobs(task=TIMER_TASK)] == ["cancelled"]
    assert await app.flows.signal("paid", "late", key="pi-4") == 0
    with pytest.raises(FlowFailed) as failed:
        await run.result(timeout=1)
    assert failed.value.run.state == "cancelled"
    assert [g[0] for g in got] == ["charge"]


async def test_a_delay_after_a_step_holds_its_completion(app: Workhorse) -> None:
    @app.task(name="noted", flow="after_delay", entry=True, wait={"after": {"delay": 0.5}})
    async def noted(data: Any) -> Any:
        return data + 1

    @app.task(name="next_one", flow="after_delay", subscribes=["step:noted"])
    async def next_one(data: Any) -> Any:
        return data * 10

    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_delay", 1)
    assert await run.result(timeout=10) == {"next_one": 20}
    # The store's clock: the delay held the completion back.
    assert await started_apart(app, run.id, "noted", "next_one") >= 0.5
