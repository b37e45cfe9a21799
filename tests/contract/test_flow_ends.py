"""A closed flow's run ends in the finish of its last step where the store can
(``Capabilities.finish_ends``): no call of its own after that finish, one flow.completed
after the step's events, its state still cleared by its cleanup rule, a run that ended
otherwise (cancelled) is not completed by its last step's late finish, a run reads
completed only once each of its steps reads ended, and a step's failure ends its run even
when job retention removed the step's record before its check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from workhorse import Workhorse
from workhorse.flows import keys
from workhorse.flows.engine import closed_ids
from workhorse.job import Lease, Outcome

from .support import DEADLINE, eventually


def line(app: Workhorse, flow: str, keep: bool = False) -> None:
    """first -> last, ``first`` keeping state when ``keep``."""

    @app.task(name=f"{flow}_first", flow=flow, entry=True)
    async def first(data: Any, ctx: Any) -> Any:
        if keep:
            await ctx.state.set("kept", data)
        return data

    @app.task(name=f"{flow}_last", flow=flow, subscribes=[f"step:{flow}_first"])
    async def last(data: Any) -> Any:
        return data


async def run_events(app: Workhorse, run: str) -> list[tuple[str, Any]]:
    async def logged() -> list[tuple[str, Any]]:
        # PostgreSQL shows an event once every older transaction has ended: poll.
        got = [(e.type, e.data.get("step")) for e in await app.flows.events(run)]
        return got if got and got[-1] == ("flow.completed", None) else []

    return await eventually(logged, "the run's events up to flow.completed")


async def test_the_last_steps_finish_ends_the_run_without_a_call_of_its_own(
    app: Workhorse,
) -> None:
    line(app, "short")
    backend = app.backend
    ours = asyncio.current_task()  # the test's own calls are not counted
    calls: list[tuple[str, str]] = []
    set_if_absent, kv_delete = backend.set_if_absent, backend.kv_delete

    async def counted_set(key: str, value: str, *args: Any, **kwargs: Any) -> bool:
        if asyncio.current_task() is not ours:
            calls.append(("set_if_absent", key))
        return await set_if_absent(key, value, *args, **kwargs)

    async def counted_delete(key: str, value: str | None = None) -> bool:
        if asyncio.current_task() is not ours:
            calls.append(("kv_delete", key))
        return await kv_delete(key, value)

    setattr(backend, "set_if_absent", counted_set)  # noqa: B010 (counts calls, the store answers)
    setattr(backend, "kv_delete", counted_delete)  # noqa: B010
    try:
        await app.start_worker(concurrency=2)
        run = await app.flows.start("short", 5)
        assert await run.result(timeout=10) == {"short_last": 5}
    finally:
        delattr(backend, "set_if_absent")
        delattr(backend, "kv_delete")
    ends = [call for call in calls if call[1] in (keys.end_key(run.id, 0), keys.live_key(run.id))]
    if backend.capabilities.finish_ends:
        assert ends == []
    else:
        # Claimed by the last step, or also by the first when its finish (its attempt
        # wrote the follow-up) came after the last one ran and both read the other done.
        claim, delete = (
            ("set_if_absent", keys.end_key(run.id, 0)),
            ("kv_delete", keys.live_key(run.id)),
        )
        assert sorted(ends) in ([delete, claim], [delete, claim, claim])
    types = await run_events(app, run.id)
    assert [t for t in types if t[0] == "flow.completed"] == [("flow.completed", None)]
    assert types.index(("step.completed", "short_last")) < types.index(("flow.completed", None))
    assert await backend.kv_get(keys.live_key(run.id)) is None


async def test_a_run_that_kept_state_ends_once_with_its_state_cleared(app: Workhorse) -> None:
    line(app, "kept", keep=True)  # on_complete: the default
    await app.start_worker(concurrency=2)
    runs = [await app.flows.start("kept", n) for n in range(3)]
    for n, run in enumerate(runs):
        assert await run.result(timeout=10) == {"kept_last": n}
        assert await app.backend.kv_scan(keys.state_prefix(run.id)) == {}
        assert await app.backend.kv_get(keys.live_key(run.id)) is None
        types = await run_events(app, run.id)
        assert [t for t in types if t[0] == "flow.completed"] == [("flow.completed", None)]


async def test_a_cancelled_run_is_not_completed_by_its_last_steps_late_finish(
    app: Workhorse,
) -> None:
    started, go = asyncio.Event(), asyncio.Event()

    @app.task(name="slow_first", flow="late", entry=True)
    async def first(data: Any) -> Any:
        return data

    @app.task(name="slow_last", flow="late", subscribes=["step:slow_first"])
    async def last(data: Any) -> Any:
        started.set()
        await go.wait()  # completes: its lease learns of the cancel only at renewal
        return data

    assert app.flows["late"].last() == "slow_last"
    await app.start_worker(concurrency=2)
    run = await app.flows.start("late", 1)
    await asyncio.wait_for(started.wait(), 10)
    assert await app.flows.cancel(run.id)
    go.set()

    async def last_done() -> bool:
        steps = (await app.flows.get(run.id)).step("slow_last")
        return bool(steps) and steps[0].state in ("completed", "cancelled")

    await eventually(last_done, "the last step to finish")
    info = await app.flows.get(run.id)
    assert info.state == "cancelled"
    await asyncio.sleep(0.3)  # a late end would be logged by now
    types = [e.type for e in await app.flows.events(run.id)]
    assert "flow.cancelled" in types
    assert "flow.completed" not in types


async def test_a_check_that_reads_a_step_finishing_meanwhile_does_not_end_the_run(
    app: Workhorse,
) -> None:
    """A check (the sweep's, or another step's) reads the run's index, then its jobs: a step
    whose finish lands between the two, writing its follow-up, reads as the run's last
    job done. The run is not over: the follow-up is still to run."""
    gate = asyncio.Event()

    @app.task(name="gap_first", flow="gap", entry=True)
    async def first(data: Any) -> Any:
        await gate.wait()
        return data

    @app.task(name="gap_last", flow="gap", subscribes=["step:gap_first"])
    async def last(data: Any) -> Any:
        return data + 1

    await app.start_worker(concurrency=2)
    run = await app.flows.start("gap", 1)
    index = keys.job_prefix(run.id)

    async def started() -> bool:
        steps = (await app.flows.get(run.id)).steps
        return [s.state for s in steps] == ["active"]

    await eventually(started, "the first step to run")
    client, ours = app.flows.engine.client, asyncio.current_task()
    get_jobs = client.get_jobs

    async def first_finishes_meanwhile(ids: Any) -> Any:
        if asyncio.current_task() is ours:  # between the check's index read and this
            gate.set()

            async def followed() -> bool:
                return len(await app.backend.kv_scan(index)) == 2

            await eventually(followed, "the first step's follow-up")
        return await get_jobs(ids)

    setattr(client, "get_jobs", first_finishes_meanwhile)  # noqa: B010 (the store answers)
    try:
        assert await app.flows.engine.check(run.id) is None
    finally:
        setattr(client, "get_jobs", get_jobs)  # noqa: B010
    assert await run.result(timeout=10) == {"gap_last": 2}
    steps = {s.step: s.state for s in (await app.flows.get(run.id)).steps}
    assert steps == {"gap_first": "completed", "gap_last": "completed"}


async def test_a_failed_step_whose_record_is_purged_before_its_check_fails_its_run(
    app: Workhorse,
) -> None:
    """Job retention (a short ``keep_failed_for``) may delete a failed step's record
    between its finish and its check. The run still ends failed at once, naming the step:
    it does not read as running for an hour (an index entry whose job is missing and
    young), then completed."""

    @app.task(name="doomed_step", flow="doomed", entry=True, retries=0)
    async def step(data: Any) -> Any:
        raise RuntimeError("no")

    client, ours = app.flows.engine.client, asyncio.current_task()
    get_jobs = client.get_jobs
    purged: list[int] = []

    async def purged_meanwhile(ids: Any) -> Any:
        if asyncio.current_task() is not ours and not purged:  # the step's own check
            purged.append(await app.purge(states=["failed"], older_than=0))
        return await get_jobs(ids)

    setattr(client, "get_jobs", purged_meanwhile)  # noqa: B010 (the store answers)
    try:
        run = await app.flows.start("doomed", 1)
        await app.worker(concurrency=2, burst=True).run()
    finally:
        delattr(client, "get_jobs")
    assert purged == [1]  # the step's record went between its finish and its check
    info = await run.wait(timeout=10)
    assert info.state == "failed"
    assert info.error is not None
    assert (info.error["step"], info.error["message"]) == ("doomed_step", "no")
    assert [s.state for s in info.steps] == ["missing"]


@dataclass
class Held:
    """A step's finish held: ``held`` is set once its worker is writing it, which waits
    for ``release``; ``last_seen`` once a worker is done with the last step's finish and
    what follows it."""

    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    last_seen: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def holding(app: Workhorse, slow: str, last: str) -> AsyncIterator[Held]:
    """Run ``slow`` (on queue ``priority``) on a worker of its own whose finishes of it wait
    for ``release``, the other steps on another; the sweep does not run: a run must end
    by its steps (the sweep covers a killed worker)."""
    state = Held()
    backend, engine = app.backend, app.flows.engine
    finish, finished = backend.finish, engine.finished

    async def held_finish(items: Sequence[tuple[Lease, Outcome]]) -> list[bool]:
        if any(lease.task == slow for lease, _ in items):
            state.held.set()
            await state.release.wait()
        return await finish(items)

    def seen(outcome: Outcome, ctx: Any, written: bool) -> Coroutine[Any, Any, None] | None:
        after = finished(outcome, ctx, written)  # what the worker does after a step's finish
        fc = getattr(ctx, "flow", None)
        if fc is None or fc.step != last:
            return after

        async def then() -> None:
            if after is not None:
                await after
            state.last_seen.set()

        return then()

    async def no_sweep() -> int:
        return 0

    setattr(backend, "finish", held_finish)  # noqa: B010 (holds a call, the store answers)
    setattr(engine, "finished", seen)  # noqa: B010
    setattr(engine, "sweep", no_sweep)  # noqa: B010
    try:
        await app.start_worker(concurrency=2, queues=["default"])
        await app.start_worker(queues=["priority"])
        yield state
    finally:
        state.release.set()
        await app.stop_workers()
        delattr(backend, "finish")
        for name in ("finished", "sweep"):
            delattr(engine, name)


async def states(app: Workhorse, run: str) -> tuple[str, dict[str, str]]:
    info = await app.flows.get(run)
    return info.state, {s.step: s.state for s in info.steps}


@pytest.mark.parametrize("late", ["starts the join", "feeds the join"])
async def test_a_run_reads_completed_only_once_each_of_its_steps_reads_ended(
    app: Workhorse, late: str
) -> None:
    """A join's input whose outcome is still on its way (its worker's finish is held) while
    the join, the run's last step, runs and completes: the run is not completed before
    that input reads completed, and that input's own finish then ends the run, whether it
    started the join (its attempt enqueued it) or the other input did."""
    gate = asyncio.Event()

    @app.task(name="fork", flow="fork", entry=True)
    async def fork(data: Any) -> Any:
        return data

    @app.task(name="slow_in", flow="fork", subscribes=["step:fork"], queue="priority")
    async def slow_in(data: Any, ctx: Any) -> Any:
        if late == "starts the join":  # the other input's attempt is over: this one joins

            async def other_done() -> bool:
                steps = (await app.flows.get(ctx.flow.run_id)).step("fast_in")
                return bool(steps) and steps[0].state == "completed"

            await eventually(other_done, "the other input to complete")
        return data + 1

    @app.task(name="fast_in", flow="fork", subscribes=["step:fork"])
    async def fast_in(data: Any) -> Any:
        if late == "feeds the join":  # the late input's attempt is over: this one joins
            await asyncio.wait_for(gate.wait(), DEADLINE)
        return data + 2

    @app.task(name="joined", flow="fork", subscribes=["step:slow_in", "step:fast_in"])
    async def joined(data: Any) -> Any:
        return data["step:slow_in"] + data["step:fast_in"]

    async with holding(app, "slow_in", "joined") as held:
        run = await app.flows.start("fork", 1)
        await asyncio.wait_for(held.held.wait(), DEADLINE)
        gate.set()
        await asyncio.wait_for(held.last_seen.wait(), DEADLINE)  # the join ran to its end
        assert await states(app, run.id) == (
            "running",
            {
                "fork": "completed",
                "slow_in": "active",
                "fast_in": "completed",
                "joined": "completed",
            },
        )
        held.release.set()
        assert await run.result(timeout=DEADLINE) == {"joined": 2 + 3}
        state, steps = await states(app, run.id)
        assert (state, set(steps.values())) == ("completed", {"completed"})
    # The ids the last step reads its inputs' jobs by are theirs.
    ids = {s.step: s.job_id for s in (await app.flows.get(run.id)).steps}
    assert closed_ids(app.flows["fork"].shape(), run.id, 0) == ids


@pytest.mark.parametrize("on_failure", ["fail", "continue"])
async def test_a_run_is_not_completed_while_a_step_that_handed_off_reads_active(
    app: Workhorse, on_failure: Literal["fail", "continue"]
) -> None:
    """Where a finish cannot write a step's follow-ups (Redis Cluster) its attempt enqueues
    them, and they may run to their end before its outcome is written: the run, closed
    (its last step ends it) or counted (``on_failure="continue"``), is not completed
    before that step reads completed, and that step's finish then ends it."""
    if app.backend.capabilities.finish_followups:
        pytest.skip("the finish writes a step's follow-ups: they cannot run before it")
    app.flows.define("handing", on_failure=on_failure)

    @app.task(name="hands", flow="handing", entry=True, queue="priority")
    async def hands(data: Any) -> Any:
        return data + 1

    @app.task(name="takes", flow="handing", subscribes=["step:hands"])
    async def takes(data: Any) -> Any:
        return data * 2

    async with holding(app, "hands", "takes") as held:
        run = await app.flows.start("handing", 1)
        await asyncio.wait_for(held.last_seen.wait(), DEADLINE)
        assert await states(app, run.id) == ("running", {"hands": "active", "takes": "completed"})
        held.release.set()
        assert await run.result(timeout=DEADLINE) == {"takes": 4}
        assert await states(app, run.id) == (
            "completed",
            {"hands": "completed", "takes": "completed"},
        )


def pair(app: Workhorse, flow: str, fails: bool) -> None:
    """Two entry steps (an open flow: its run ends by a check), the second failing when
    ``fails``."""

    @app.task(name=f"{flow}_one", flow=flow, entry=True)
    async def one(data: Any) -> Any:
        return data

    @app.task(name=f"{flow}_two", flow=flow, entry=True, retries=0)
    async def two(data: Any) -> Any:
        if fails:
            raise RuntimeError("no")
        return data


@pytest.mark.parametrize("fails", [True, False])
async def test_a_purged_steps_end_is_read_from_the_log_when_its_worker_never_checked(
    app: Workhorse, fails: bool
) -> None:
    """A step's worker may die between its finish and its check, and retention may then
    purge the step's record: the sweep's check (here called by hand) reads the step's end
    from the run's event log. A failed step fails the run at once, naming the step, a
    completed one lets it complete; neither reads as running for an hour (a missing,
    young record), nor a failed one as completed after it."""
    flow = "purged_fails" if fails else "purged_ends"
    pair(app, flow, fails)
    engine = app.flows.engine

    def died(outcome: Outcome, ctx: Any, written: bool) -> None:
        return None  # the worker's check after the finish never runs

    async def no_sweep() -> int:
        return 0

    setattr(engine, "finished", died)  # noqa: B010 (skips the worker's check)
    setattr(engine, "sweep", no_sweep)  # noqa: B010
    try:
        run = await app.flows.start(flow, 3)
        await app.worker(concurrency=2, burst=True).run()
    finally:
        for name in ("finished", "sweep"):
            delattr(engine, name)
    assert (await app.flows.get(run.id)).state == "running"  # nothing checked it yet

    async def logged() -> bool:
        # PostgreSQL shows an event once every older transaction has ended: poll.
        ends = [
            e for e in await app.flows.events(run.id) if e.type in ("step.completed", "step.failed")
        ]
        return len(ends) == 2

    await eventually(logged, "both steps' end events")
    assert await app.purge(states=["completed", "failed"], older_than=0) == 2
    assert await app.flows.check(run.id) == ("failed" if fails else "completed")
    info = await app.flows.get(run.id)
    if fails:
        assert info.state == "failed"
        assert info.error is not None
        assert (info.error["step"], info.error["message"]) == (f"{flow}_two", "no")
    else:
        assert info.state == "completed"
