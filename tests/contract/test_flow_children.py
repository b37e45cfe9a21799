"""Runs that steps start (``ctx.flow.start``), on every backend: a child knows its parent
and the parent lists its children; cancelling a run cancels the runs its steps started,
and theirs, and a child started by a step after its run ended is cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from workhorse import Workhorse

from .support import eventually


def family(app: Workhorse, gate: asyncio.Event | None = None) -> None:
    """``parent`` starts a ``child`` run per item of its input; a child's step starts a
    ``grandchild`` run whose step is queued where nothing runs (queue ``held``)."""

    @app.task(name="spawn", flow="parent", entry=True)
    async def spawn(data: Any, ctx: Any) -> Any:
        if gate is not None:
            await gate.wait()
        return [await ctx.flow.start("child", n) for n in data]

    @app.task(name="grow", flow="child", entry=True)
    async def grow(data: Any, ctx: Any) -> Any:
        return await ctx.flow.start("grandchild", data)

    @app.task(name="wait_here", flow="grandchild", entry=True, queue="held")
    async def wait_here(data: Any) -> Any:
        return data


async def state(app: Workhorse, run: str) -> str:
    return (await app.flows.get(run)).state


async def test_cancelling_a_run_cancels_the_runs_its_steps_started(app: Workhorse) -> None:
    family(app)
    await app.pause("held")
    await app.start_worker(queues=["default", "held"], concurrency=4)
    run = await app.flows.start("parent", [1, 2])
    children = (await run.result(timeout=10))["spawn"]
    info = await app.flows.get(run.id)
    assert (info.parent, sorted(info.children)) == (None, sorted(children))
    grandchildren = []
    for child in children:
        done = await app.flows.handle(child).result(timeout=10)
        grandchildren.append(done["grow"])
        got = await app.flows.get(child)
        assert (got.parent, got.children) == (run.id, [done["grow"]])
        assert (await app.flows.get(done["grow"])).parent == child
    assert [await state(app, g) for g in grandchildren] == ["running", "running"]

    # The parent and its children have completed: the cancel still reaches the runs
    # their steps started.
    assert not await app.flows.cancel(run.id)
    assert [await state(app, g) for g in grandchildren] == ["cancelled", "cancelled"]
    assert [await state(app, c) for c in children] == ["completed", "completed"]


async def test_a_running_child_is_cancelled_with_its_parent(app: Workhorse) -> None:
    @app.task(name="start_one", flow="holder", entry=True)
    async def start_one(data: Any, ctx: Any) -> Any:
        return await ctx.flow.start("grandchild", data)

    @app.task(name="then_wait", flow="holder", subscribes=["step:start_one"], queue="held")
    async def then_wait(data: Any) -> Any:
        return data

    family(app)
    await app.pause("held")
    await app.start_worker(queues=["default", "held"], concurrency=2)
    run = await app.flows.start("holder", 7)

    async def started() -> list[str]:
        return (await app.flows.get(run.id)).children

    (child,) = await eventually(started, "the step to start its child run")
    assert await app.flows.cancel(run.id)
    assert await state(app, run.id) == "cancelled"
    assert await state(app, child) == "cancelled"


async def test_a_child_started_after_its_runs_end_is_cancelled(app: Workhorse) -> None:
    gate = asyncio.Event()
    family(app, gate)
    await app.pause("held")
    await app.start_worker(queues=["default", "held"], concurrency=4)
    run = await app.flows.start("parent", [3])

    async def spawning() -> bool:
        steps = (await app.flows.get(run.id)).steps
        return [s.state for s in steps] == ["active"]

    await eventually(spawning, "the parent's step to run")
    assert await app.flows.cancel(run.id)  # its step learns it at its next renewal
    gate.set()

    async def child_of() -> list[str]:
        return (await app.flows.get(run.id)).children

    (child,) = await eventually(child_of, "the step to start its child anyway")
    await eventually(lambda: _is(app, child, "cancelled"), "the late child run to be cancelled")


async def _is(app: Workhorse, run: str, expected: str) -> bool:
    return await state(app, run) == expected
