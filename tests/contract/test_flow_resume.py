"""Resuming a run where it stopped, on every backend: a failed run's failed step runs
again while its completed steps keep their outputs; what a step that completed after the
run's end would have started is started; a cancelled run goes on; a completed run with
nothing failed has nothing to resume. And a step run again starts no second child run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workhorse import Workhorse
from workhorse.flows import FlowFailed, NothingToResume, RestartInFlight, keys

from .support import eventually


def diamond(
    app: Workhorse,
    flow: str,
    ran: list[str],
    broken: set[str],
    held: dict[str, asyncio.Event] | None = None,
) -> None:
    """A -> (B, C) -> D, D joining B and C; a step named in ``broken`` raises, one in
    ``held`` waits for its event first."""

    async def body(name: str, data: Any) -> Any:
        ran.append(name)
        if held and name in held:
            await held[name].wait()
        if name in broken:
            raise RuntimeError(f"{name} is broken")
        return {name: data}

    @app.task(name=f"{flow}_a", flow=flow, entry=True)
    async def a(data: Any) -> Any:
        return await body("a", data)

    @app.task(name=f"{flow}_b", flow=flow, subscribes=[f"step:{flow}_a"])
    async def b(data: Any) -> Any:
        return await body("b", data)

    @app.task(name=f"{flow}_c", flow=flow, subscribes=[f"step:{flow}_a"])
    async def c(data: Any) -> Any:
        return await body("c", data)

    @app.task(name=f"{flow}_d", flow=flow, subscribes=[f"step:{flow}_b", f"step:{flow}_c"])
    async def d(data: Any) -> Any:
        return await body("d", data)


async def failed_diamond(app: Workhorse, flow: str) -> tuple[Any, list[str], set[str]]:
    """A diamond run whose step C failed it: the run, the steps run, the broken ones."""
    ran: list[str] = []
    broken = {"c"}
    diamond(app, flow, ran, broken)
    await app.start_worker(concurrency=4)
    run = await app.flows.start(flow, 1)
    with pytest.raises(FlowFailed):
        await run.result(timeout=10)
    return run, ran, broken


async def test_a_failed_run_resumes_from_its_failed_step(app: Workhorse) -> None:
    run, ran, broken = await failed_diamond(app, "mend")
    assert sorted(ran) == ["a", "b", "c"]

    broken.clear()
    assert await app.flows.resume(run.id) == 1
    out = await run.result(timeout=10)
    assert out == {
        "mend_d": {"d": {"step:mend_b": {"b": {"a": 1}}, "step:mend_c": {"c": {"a": 1}}}}
    }
    assert sorted(ran) == ["a", "b", "c", "c", "d"]  # a and b did not run again
    info = await app.flows.get(run.id)
    assert (info.state, info.error, info.ended_at is not None) == ("completed", None, True)
    types = [e.type for e in await app.flows.events(run.id)]
    assert types.count("flow.failed") == 1 and types[-1] == "flow.completed"
    resumed = [e for e in await app.flows.events(run.id) if e.type == "flow.resumed"]
    assert [(e.data["retried"], e.data["reopened"]) for e in resumed] == [(1, "failed")]


async def test_a_step_that_completed_after_the_runs_end_starts_its_followers_on_resume(
    app: Workhorse,
) -> None:
    """C completes after B failed the run and before the run's live steps are cancelled:
    the join's input from C was refused (the run had ended). Resumed, the join gets it."""
    ran: list[str] = []
    broken = {"b"}
    c_done, cancel_gate = asyncio.Event(), asyncio.Event()
    diamond(app, "late", ran, broken, {"c": c_done})
    engine = app.flows.engine
    cancel_jobs = engine.cancel_jobs

    async def held_cancel(run: str) -> None:  # the failure's cancel waits for C's finish
        await cancel_gate.wait()
        await cancel_jobs(run)

    engine.cancel_jobs = held_cancel  # type: ignore[method-assign]
    await app.start_worker(concurrency=4)
    run = await app.flows.start("late", 1)

    async def failed() -> bool:
        return (await app.flows.get(run.id)).state == "failed"

    async def c_completed() -> bool:
        steps = {s.step: s.state for s in (await app.flows.get(run.id)).steps}
        return steps.get("late_c") == "completed"

    await eventually(failed, "the run to fail")
    c_done.set()
    await eventually(c_completed, "C to complete after the run ended")
    cancel_gate.set()
    assert "d" not in ran
    broken.clear()
    assert await app.flows.resume(run.id) == 1
    out = await run.result(timeout=10)
    assert out == {
        "late_d": {"d": {"step:late_b": {"b": {"a": 1}}, "step:late_c": {"c": {"a": 1}}}}
    }
    assert sorted(ran) == ["a", "b", "b", "c", "d"]


async def test_a_cancelled_run_goes_on_where_it_stopped(app: Workhorse) -> None:
    ran: list[str] = []

    @app.task(name="first", flow="paused_run", entry=True)
    async def first(data: Any) -> Any:
        ran.append("first")
        return data + 1

    @app.task(name="second", flow="paused_run", subscribes=["step:first"], queue="held")
    async def second(data: Any) -> Any:
        ran.append("second")
        return data * 10

    app.flows.define("paused_run", on_failure="continue")  # a counted flow
    await app.pause("held")
    await app.start_worker(queues=["default", "held"], concurrency=2)
    run = await app.flows.start("paused_run", 1)

    async def queued() -> bool:
        steps = {s.step: s.state for s in (await app.flows.get(run.id)).steps}
        return steps == {"first": "completed", "second": "queued"}

    await eventually(queued, "the second step to be queued where nothing runs")
    assert await app.flows.cancel(run.id)
    assert (await run.wait(timeout=10)).state == "cancelled"
    await app.resume("held")
    assert await app.flows.resume(run.id) == 1
    assert await run.result(timeout=10) == {"second": 20}
    assert ran == ["first", "second"]


async def test_a_completed_run_has_nothing_to_resume_unless_a_branch_failed(
    app: Workhorse,
) -> None:
    ran: list[str] = []
    broken = {"b"}
    diamond(app, "whole", ran, broken)
    diamond(app, "partial", ran, broken)
    app.flows.define("partial", on_failure="continue")
    await app.start_worker(concurrency=4)
    broken.clear()
    done = await app.flows.start("whole", 1)
    await done.result(timeout=10)
    with pytest.raises(NothingToResume, match="nothing to resume"):
        await app.flows.resume(done.id)

    broken.add("b")
    partial = await app.flows.start("partial", 2)
    info = await partial.wait(timeout=10)
    assert info.state == "completed"
    assert {s.step: s.state for s in info.steps}["partial_b"] == "failed"
    broken.clear()
    assert await app.flows.resume(partial.id) == 1
    out = await partial.result(timeout=10)
    assert out == {
        "partial_d": {"d": {"step:partial_b": {"b": {"a": 2}}, "step:partial_c": {"c": {"a": 2}}}}
    }


async def test_a_step_run_again_starts_no_second_child_run(app: Workhorse) -> None:
    """``ctx.flow.start`` is an occurrence, as an emit: the attempt that runs again after
    a failure gets the runs its first attempt started."""
    started: list[list[str]] = []

    @app.task(name="spawn", flow="parent", entry=True, retries=1)
    async def spawn(data: Any, ctx: Any) -> Any:
        ids = [await ctx.flow.start("child", {"n": n}) for n in range(2)]
        started.append(ids)
        if len(started) == 1:
            raise RuntimeError("fails after starting its children")
        return ids

    @app.task(name="grow", flow="child", entry=True)
    async def grow(data: Any) -> Any:
        return data["n"]

    await app.start_worker(concurrency=2)
    run = await app.flows.start("parent", None)
    out = await run.result(timeout=10)
    assert len(started) == 2 and started[0] == started[1] == out["spawn"]
    children = await app.flows.list("child")
    assert sorted(r.id for r in children) == sorted(started[0])
    for child in started[0]:
        assert (await app.flows.handle(child).wait(timeout=10)).state == "completed"


async def test_a_resume_and_a_restart_of_one_generation_never_interleave(
    app: Workhorse,
) -> None:
    run, _, broken = await failed_diamond(app, "both")
    # A restart of the generation under way (its claim held): the resume refuses.
    claim = keys.restart_key(run.id, 0)
    assert await app.backend.set_if_absent(claim, "another call", 60)
    with pytest.raises(RestartInFlight, match="being restarted, resumed or removed"):
        await app.flows.resume(run.id)
    assert (await app.flows.get(run.id)).state == "failed"  # nothing changed
    await app.backend.kv_delete(claim)
    broken.clear()
    assert await app.flows.resume(run.id) == 1
    await run.result(timeout=10)
    assert await app.backend.kv_get(claim) is None  # the resume's own claim is let go


async def test_a_resume_and_a_removal_of_the_run_never_interleave(app: Workhorse) -> None:
    """Retention removes an ended run while holding its generation, as a resume does: a
    removal finds a resume under way and keeps the run; a resume that read the run just
    before a removal took it finds it gone, and writes none of it back."""
    run, _, broken = await failed_diamond(app, "gone")
    engine = app.flows.engine
    token = "a resume under way"
    assert await app.backend.set_if_absent(keys.restart_key(run.id, 0), token, 60)
    assert not await engine.remove_run(run.id)
    assert (await app.flows.get(run.id)).state == "failed"  # kept whole
    await app.backend.kv_delete(keys.restart_key(run.id, 0), token)

    backend, set_if_absent = app.backend, app.backend.set_if_absent

    async def removed_first(key: str, value: str, ttl: float | None = None) -> bool:
        if key == keys.restart_key(run.id, 0):
            backend.set_if_absent = set_if_absent  # type: ignore[method-assign]
            assert await engine.remove_run(run.id)  # lands between the read and the hold
        return await set_if_absent(key, value, ttl)

    backend.set_if_absent = removed_first  # type: ignore[method-assign]
    broken.clear()
    with pytest.raises(LookupError, match="removed meanwhile"):
        await app.flows.resume(run.id)
    backend.set_if_absent = set_if_absent  # type: ignore[method-assign]
    assert not [k for k in await app.backend.kv_scan(keys.PREFIX) if run.id in k]
    with pytest.raises(LookupError):
        await app.flows.get(run.id)
