"""Stall detection on every backend: a running run that made no progress for its flow's
stall_timeout (the store's clock) is marked stalled with one flow.stalled event; resume
clears the mark; a run whose wait has a timer is waiting, not stalled."""

from __future__ import annotations

import asyncio
from typing import Any

from workhorse import Workhorse

from .support import eventually
from .test_flow_waits import paid_flow, waiting_after

STALL = 0.3  # a stall timeout a test lets pass


async def test_a_run_without_progress_is_marked_stalled_once_and_resumed(
    app: Workhorse,
) -> None:
    calls: list[int] = []

    @app.task(name="go", flow="stuck", entry=True)
    async def go(data: Any) -> Any:
        return data

    @app.task(name="blocked", flow="stuck", subscribes=["step:go"], queue="held")
    async def blocked(data: Any) -> Any:
        calls.append(data)
        return data

    app.flows.define("stuck", stall_timeout=STALL)
    await app.pause("held")  # its second step is queued where nothing runs
    await app.start_worker(queues=["default", "held"], concurrency=2)
    run = await app.flows.start("stuck", 1)
    engine = app.flows.engine

    async def idle() -> bool:
        return [s.state for s in (await app.flows.get(run.id)).steps] == ["completed", "queued"]

    async def stalled() -> bool:
        await engine.sweep()
        return bool((await app.flows.get(run.id)).stalled_at)

    await eventually(idle, "the second step to be queued where nothing runs")
    await eventually(stalled, "the run to be marked stalled")
    await engine.sweep()  # no second mark for the same stall
    info = await app.flows.get(run.id)
    assert info.state == "running"
    assert await app.flows.resume(run.id) == 0
    assert (await app.flows.get(run.id)).stalled_at is None

    async def resumed() -> list[Any]:
        got = await app.flows.events(run.id)
        return got if "flow.resumed" in [e.type for e in got] else []

    stalls = [e for e in await eventually(resumed, "flow.resumed") if e.type == "flow.stalled"]
    assert len(stalls) == 1
    assert stalls[0].data["idle"] >= STALL
    await app.resume("held")
    assert await run.result(timeout=10) == {"blocked": 1}
    assert calls == [1]


async def test_a_run_waiting_on_a_timer_is_not_stalled(app: Workhorse) -> None:
    paid_flow(app, "after_idle", [], timeout=3600)
    app.flows.define("after_idle", stall_timeout=STALL)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("after_idle", {"n": 5})
    await waiting_after(app, run.id)
    await asyncio.sleep(STALL * 2)  # idle past its stall timeout
    await app.flows.engine.sweep()
    info = await app.flows.get(run.id)
    assert (info.state, info.waiting, info.stalled_at) == ("running", True, None)
    assert "flow.stalled" not in [e.type for e in await app.flows.events(run.id)]
