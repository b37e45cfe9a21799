"""Stall detection on the fake clock: a running run that made no progress for its flow's
stall_timeout is marked stalled with one flow.stalled event; resume clears the mark and
retries its failed steps."""

from __future__ import annotations

import asyncio
from typing import Any

from workhorse import Workhorse
from workhorse.testing import FakeClock


async def test_a_run_without_progress_is_marked_stalled_once_and_resumed(
    app: Workhorse, clock: FakeClock
) -> None:
    calls: list[int] = []

    @app.task(name="go", flow="stuck", entry=True)
    async def go(data: Any) -> Any:
        return data

    @app.task(name="blocked", flow="stuck", subscribes=["step:go"], queue="held")
    async def blocked(data: Any) -> Any:
        calls.append(data)
        return data

    app.flows.define("stuck", stall_timeout=300)
    await app.pause("held")  # its second step is queued where nothing runs
    await app.start_worker(queues=["default", "held"], concurrency=2)
    run = await app.flows.start("stuck", 1)
    for _ in range(100):
        if [s.state for s in (await app.flows.get(run.id)).steps] == ["completed", "queued"]:
            break
        await asyncio.sleep(0.02)
    engine = app.flows.engine
    clock.advance(299)
    await engine.sweep()
    assert (await app.flows.get(run.id)).stalled_at is None
    clock.advance(2)
    await engine.sweep()
    await engine.sweep()
    info = await app.flows.get(run.id)
    assert info.state == "running"
    assert info.stalled_at is not None
    stalls = [e for e in await app.flows.events(run.id) if e.type == "flow.stalled"]
    assert len(stalls) == 1
    assert stalls[0].data["idle"] >= 300

    assert await app.flows.resume(run.id) == 0
    assert (await app.flows.get(run.id)).stalled_at is None
    await app.resume("held")
    assert await run.result(timeout=5) == {"blocked": 1}
    assert calls == [1]
    await app.stop_workers()
