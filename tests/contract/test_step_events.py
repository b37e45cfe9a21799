"""A flow step's own events (step.started, its step.completed or other end) go with its
outcome, in the finish's store call, where the store can (``Capabilities.finish_events``):
they are in the run's events before its follow-ups' (cause order), in the log before its
job's outcome, and a finish the store refuses (the lease was lost) writes none of them.
Redis Cluster publishes them apart, as before."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from workhorse import Workhorse
from workhorse.job import Event, Outcome

from .support import LONG, eventually, line_flow, settled_log


def _count_step_publishes(app: Workhorse) -> list[str]:
    """The step events the worker publishes apart (not with a finish)."""
    backend = app.backend
    seen: list[str] = []
    real = backend.publish

    async def counted(events: Sequence[Event]) -> None:
        seen.extend(e.type for e in events if e.type.startswith("step."))
        await real(events)

    setattr(backend, "publish", counted)  # noqa: B010 (counts calls, the store answers)
    return seen


async def _events_up_to_the_end(app: Workhorse, run: str) -> list[Event]:
    async def logged() -> list[Event]:
        got = await app.flows.events(run)
        return got if got and got[-1].type == "flow.completed" else []

    return await eventually(logged, "the run's events up to flow.completed")


async def test_a_steps_events_come_before_its_followups_and_its_outcome(app: Workhorse) -> None:
    line_flow(app, 2)
    apart = _count_step_publishes(app)
    try:
        await app.start_worker(concurrency=4)
        run = await app.flows.start("line", 1)
        assert (await run.wait(timeout=10)).state == "completed"
        got = await _events_up_to_the_end(app, run.id)
    finally:
        delattr(app.backend, "publish")
    capable = app.backend.capabilities.finish_events  # not on Redis Cluster
    if capable:
        assert apart == []  # no publish of their own
    else:
        assert "step.started" in apart
    types = [(e.type, e.data.get("step")) for e in got]
    assert types == [
        ("flow.started", None),
        ("step.started", "s1"),
        ("step.completed", "s1"),
        ("step.started", "s2"),
        ("step.completed", "s2"),
        ("flow.completed", None),
    ]
    # A step's event keeps the time it happened: its start no later than its job's end.
    jobs = {s.step: s for s in (await app.flows.get(run.id)).steps}
    for e in got[1:5]:
        step = jobs[e.data["step"]]
        assert e.job_id == step.job_id and e.data["attempt"] == 1
    started = next(e for e in got if e.type == "step.started")
    completed = next(e for e in got if e.type == "step.completed")
    assert started.at <= completed.at
    if not capable:
        # Redis Cluster keeps a stream per slot and merges them by millisecond: events of
        # different streams within one millisecond have no order there; the run's own
        # order (above) is what it promises.
        return
    # In the whole log: each step's events before its job's outcome and the next's enqueue.
    log = [(e.type, e.task) for e in await settled_log(app.backend)]
    assert log.index(("step.completed", "s1")) < log.index(("job.completed", "s1"))
    assert log.index(("step.completed", "s1")) < log.index(("job.queued", "s2"))
    assert log.index(("step.started", "s2")) < log.index(("job.completed", "s2"))


async def test_a_step_that_emits_logs_its_start_before_its_emit(app: Workhorse) -> None:
    @app.task(name="split", flow="fan", entry=True, emits=["item"])
    async def split(data: Any, ctx: Any) -> int:
        await ctx.flow.emit("item", 1)
        await ctx.flow.emit("item", 2)
        return 2

    @app.task(name="each", flow="fan", subscribes=["item"])
    async def each(n: int) -> int:
        return n

    await app.start_worker(concurrency=4)
    run = await app.flows.start("fan", None)
    assert (await run.wait(timeout=10)).state == "completed"
    got = await _events_up_to_the_end(app, run.id)
    types = [(e.type, e.data.get("step")) for e in got]
    assert types[:3] == [("flow.started", None), ("step.started", "split"), ("emit", "split")]
    # Each started step came after the emit that caused it.
    emits = [n for n, t in enumerate(types) if t == ("emit", "split")]
    starts = [n for n, t in enumerate(types) if t == ("step.started", "each")]
    assert len(emits) == 2 and len(starts) == 2
    assert emits[0] < starts[0] and emits[1] < starts[1]
    assert types.index(("step.completed", "split")) < types.index(("flow.completed", None))


async def test_a_refused_finish_writes_no_step_completed(app: Workhorse) -> None:
    @app.task(name="only", flow="single", entry=True)
    async def only(n: int) -> int:
        return n

    run = await app.flows.start("single", 1)
    (lease,) = await app.backend.claim(["default"], "w", 1, LONG)
    engine = app.flows.engine

    async def attempt() -> Outcome:
        return Outcome("completed", result=b"1")

    outcome = await engine.run(lease, SimpleNamespace(), attempt)
    if outcome.after is not None:  # published apart (Redis Cluster): stored first
        await outcome.after
    stale = dataclasses.replace(lease, token=lease.token + "x")  # reclaimed by another worker
    assert await app.backend.finish([(stale, outcome)]) == [False]

    async def written() -> list[str]:
        evs = await app.flows.events(run.id)
        got = [e.type for e in evs if e.data.get("step") == "only"]
        return got if len(got) >= 2 else []

    log = await settled_log(app.backend, lease.job_id)
    if app.backend.capabilities.finish_events:
        # Its events went nowhere with its refused outcome.
        assert [e.type for e in log if e.type.startswith("step.")] == []
    # Sent again with the lease still held, it is written with them, once (Redis Cluster
    # published them apart, as before, stored before the outcome was sent).
    assert await app.backend.finish([(lease, outcome)]) == [True]
    assert await eventually(written, "the step's events") == ["step.started", "step.completed"]
    assert [e.type for e in await settled_log(app.backend, lease.job_id)].count(
        "step.completed"
    ) == 1


async def test_a_long_steps_start_is_logged_while_it_runs(app: Workhorse) -> None:
    """Only a quick step's start waits for its outcome: hooks, a run's stream and the
    dashboard see a step that is still running as started."""
    release = asyncio.Event()

    @app.task(name="slow", flow="long", entry=True)
    async def slow(n: int) -> int:
        await release.wait()
        return n

    await app.start_worker(concurrency=1)
    run = await app.flows.start("long", 1)

    async def started() -> list[Event]:
        return [e for e in await app.flows.events(run.id) if e.type == "step.started"]

    try:
        assert len(await eventually(started, "the running step's step.started")) == 1
        assert [e.type for e in await app.flows.events(run.id)] == [
            "flow.started",
            "step.started",
        ]
    finally:
        release.set()
    assert (await run.wait(timeout=10)).state == "completed"
    got = await _events_up_to_the_end(app, run.id)
    assert [e.type for e in got] == [
        "flow.started",
        "step.started",
        "step.completed",
        "flow.completed",
    ]


async def test_a_steps_job_events_are_its_jobs_and_its_run_has_the_steps(app: Workhorse) -> None:
    """A step's job page (job_events) lists what its job went through, the same on every
    store; its step.started and step.completed are the run's events, read by the run."""
    line_flow(app, 2)
    await app.start_worker(concurrency=4)
    run = await app.flows.start("line", 1)
    assert (await run.wait(timeout=10)).state == "completed"
    await _events_up_to_the_end(app, run.id)
    for step in (await app.flows.get(run.id)).steps:
        types = [e.type for e in await app.backend.job_events(step.job_id)]
        assert types == ["job.queued", "job.started", "job.completed"], step.step
    by_run = [e.type for e in await app.flows.events(run.id)]
    assert by_run.count("step.started") == by_run.count("step.completed") == 2
