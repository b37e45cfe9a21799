"""Flows over every backend: steps joined by triggers run once each, joins get their inputs
keyed by trigger and fire once, runs end completed, failed or cancelled, and restart
replays a run from its input."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from workhorse import Workhorse
from workhorse.flows import FlowFailed, keys, records
from workhorse.flows import engine as flows_engine

from .support import eventually


def diamond(app: Workhorse, ran: list[tuple[str, Any]], pause: float = 0.0) -> None:
    """A -> (B, C) -> D, D joining B and C."""

    @app.task(name="a", flow="diamond", entry=True)
    async def a(data: Any) -> Any:
        ran.append(("a", data))
        return {"n": data["n"]}

    @app.task(name="b", flow="diamond", subscribes=["step:a"])
    async def b(data: Any) -> Any:
        ran.append(("b", data))
        await asyncio.sleep(pause)
        return data["n"] + 1

    @app.task(name="c", flow="diamond", subscribes=["step:a"])
    async def c(data: Any) -> Any:
        ran.append(("c", data))
        await asyncio.sleep(pause)
        return data["n"] * 10

    @app.task(name="d", flow="diamond", subscribes=["step:b", "step:c"])
    async def d(data: Any) -> Any:
        ran.append(("d", data))
        return data["step:b"] + data["step:c"]


async def test_diamond_runs_each_step_once_and_joins_inputs_by_trigger(app: Workhorse) -> None:
    ran: list[tuple[str, Any]] = []
    diamond(app, ran)
    await app.start_worker(concurrency=4)
    run = await app.flows.start("diamond", {"n": 2})
    assert await run.result(timeout=10) == {"d": 3 + 20}
    assert sorted(name for name, _ in ran) == ["a", "b", "c", "d"]
    assert ("d", {"step:b": 3, "step:c": 20}) in ran
    info = await app.flows.get(run.id)
    assert info.state == "completed"
    assert {s.step: s.state for s in info.steps} == {
        "a": "completed",
        "b": "completed",
        "c": "completed",
        "d": "completed",
    }
    assert info.step("d")[0].input == {"step:b": 3, "step:c": 20}

    async def logged() -> list[tuple[str, Any]]:
        # PostgreSQL shows an event once every older transaction has ended: poll.
        got = [(e.type, e.data.get("step")) for e in await app.flows.events(run.id)]
        return got if got and got[-1] == ("flow.completed", None) else []

    types = await eventually(logged, "the run's events up to flow.completed")
    assert types[0] == ("flow.started", None)
    assert types[-1] == ("flow.completed", None)
    assert ("step.completed", "d") in types
    assert [r.id for r in await app.flows.list("diamond", "completed")] == [run.id]


async def test_fan_out_over_a_list_and_over_an_empty_list(app: Workhorse) -> None:
    seen: list[int] = []

    @app.task(name="split", flow="fan", entry=True, emits=["item"])
    async def split(data: Any, ctx: Any) -> int:
        for x in data:
            await ctx.flow.emit("item", x)
        return len(data)

    @app.task(name="square", flow="fan", subscribes=["item"])
    async def square(x: int) -> int:
        seen.append(x)
        return x * x

    await app.start_worker(concurrency=4)
    run = await app.flows.start("fan", [1, 2, 3])
    info = await run.wait(timeout=10)
    assert info.state == "completed"
    assert sorted(s.output for s in info.step("square")) == [1, 4, 9]
    assert sorted(seen) == [1, 2, 3]
    empty = await app.flows.start("fan", [])
    info = await empty.wait(timeout=10)
    assert info.state == "completed"
    assert [s.step for s in info.steps] == ["split"]


async def test_an_open_flows_steps_look_at_the_run_only_when_it_may_be_over(
    app: Workhorse,
) -> None:
    """A fan-out by emits is not closed: its run keeps a count of its live steps, and a
    step reads the run's job index only when the count is down to zero, not after each."""

    @app.task(name="spread", flow="spread", entry=True, emits=["part"])
    async def spread(n: int, ctx: Any) -> int:
        for i in range(n):
            await ctx.flow.emit("part", i)
        return n

    @app.task(name="part", flow="spread", subscribes=["part"])
    async def part(i: int) -> int:
        return i

    backend = app.backend
    ours = asyncio.current_task()  # the test's own reads (run.wait) are not counted
    scans: list[str] = []
    real = backend.kv_scan

    async def counted(prefix: str) -> dict[str, str]:
        if asyncio.current_task() is not ours:
            scans.append(prefix)
        return await real(prefix)

    setattr(backend, "kv_scan", counted)  # noqa: B010 (counts calls, the store answers)
    try:
        await app.start_worker(concurrency=4)
        run = await app.flows.start("spread", 20)
        info = await run.wait(timeout=10)
    finally:
        delattr(backend, "kv_scan")
    assert info.state == "completed"
    assert sorted(s.output for s in info.step("part")) == list(range(20))
    assert 1 <= scans.count(keys.job_prefix(run.id)) <= 2  # was one per part: 20


async def test_a_counted_runs_steps_that_end_together_share_their_count_updates(
    app: Workhorse,
) -> None:
    """The steps of an open flow that end at once (their outcomes written together) add
    their ends to the run's count of live steps in one store call, each reading its own
    value: the one that brings it to zero ends the run."""
    release = asyncio.Event()
    running = 0

    @app.task(name="fanout", flow="together", entry=True, emits=["part"])
    async def fanout(n: int, ctx: Any) -> int:
        for i in range(n):
            await ctx.flow.emit("part", i)
        return n

    @app.task(name="held", flow="together", subscribes=["part"])
    async def held(i: int) -> int:
        nonlocal running
        running += 1
        if running == 20:
            release.set()
        await release.wait()  # all 20 end in the same turn of the loop
        return i

    backend = app.backend
    ours = asyncio.current_task()
    sizes: list[int] = []
    real = backend.counter_add_many

    async def counted(items: Any) -> list[int]:
        if asyncio.current_task() is not ours:
            sizes.append(len(items))
        return await real(items)

    setattr(backend, "counter_add_many", counted)  # noqa: B010 (counts calls, the store answers)
    try:
        await app.start_worker(concurrency=25)
        run = await app.flows.start("together", 20)
        info = await run.wait(timeout=10)
    finally:
        delattr(backend, "counter_add_many")
    assert info.state == "completed"
    assert sorted(s.output for s in info.step("held")) == list(range(20))
    assert sum(sizes) == 22  # each step's end, the entry's too, and its first emit's reservation
    assert len(sizes) <= 6  # was a counter_add per step's end and one reservation: 22
    ended = [e for e in await backend.run_events(run.id) if e.type == "flow.completed"]
    assert len(ended) == 1


def branches(app: Workhorse, flow: str, ran: list[str]) -> None:
    @app.task(name=f"{flow}_start", flow=flow, entry=True)
    async def start(data: Any) -> Any:
        return data

    @app.task(name=f"{flow}_bad", flow=flow, subscribes=[f"step:{flow}_start"])
    async def bad(data: Any) -> Any:
        raise RuntimeError("boom")

    @app.task(name=f"{flow}_good", flow=flow, subscribes=[f"step:{flow}_start"])
    async def good(data: Any) -> Any:
        await asyncio.sleep(0.2)
        ran.append("good")
        return "ok"

    @app.task(name=f"{flow}_after", flow=flow, subscribes=[f"step:{flow}_good"])
    async def after(data: Any) -> Any:
        ran.append("after")
        return data


async def test_a_failed_step_fails_the_run_or_the_others_continue(app: Workhorse) -> None:
    ran: list[str] = []
    branches(app, "strict", ran)
    branches(app, "lenient", ran)
    app.flows.define("lenient", on_failure="continue")
    await app.start_worker(concurrency=4)

    strict = await app.flows.start("strict", 1)
    with pytest.raises(FlowFailed) as failed:
        await strict.result(timeout=10)
    assert failed.value.run.state == "failed"
    assert failed.value.run.error is not None
    assert failed.value.run.error["step"] == "strict_bad"
    assert "boom" in failed.value.run.error["message"]

    lenient = await app.flows.start("lenient", 1)
    info = await lenient.wait(timeout=10)
    assert info.state == "completed"
    assert {s.step: s.state for s in info.steps}["lenient_bad"] == "failed"
    assert {s.step: s.output for s in info.steps}["lenient_after"] == "ok"


async def test_a_step_whose_output_its_follow_up_rejects_fails_the_run_with_why(
    app: Workhorse,
) -> None:
    """The next step's input model refuses the output: the same on every rerun, so the
    step fails (once) and the run with it, naming the step and the reason."""
    ran: list[str] = []

    @app.task(name="shape_a", flow="shape", entry=True)
    async def a(n: int) -> str:
        ran.append("a")
        return "not a number"

    @app.task(name="shape_b", flow="shape", subscribes=["step:shape_a"])
    async def b(n: int) -> int:
        return n

    await app.start_worker(concurrency=2)
    run = await app.flows.start("shape", 1)
    with pytest.raises(FlowFailed) as failed:
        await run.result(timeout=10)
    error = failed.value.run.error
    assert error is not None and error["step"] == "shape_a"
    assert "step shape_a's follow-ups: invalid payload for task 'shape_b'" in error["message"]
    assert ran == ["a"]
    (step,) = (await app.flows.get(run.id)).steps
    assert (step.step, step.state, step.attempts) == ("shape_a", "failed", 1)


async def test_cancel_stops_running_and_queued_steps(app: Workhorse) -> None:
    started = asyncio.Event()
    ran: list[str] = []

    @app.task(name="slow", flow="cancel_me", entry=True)
    async def slow(data: Any) -> Any:
        started.set()
        await asyncio.sleep(30)
        return data

    @app.task(name="later", flow="cancel_me", subscribes=["step:slow"])
    async def later(data: Any) -> Any:
        ran.append("later")

    # A running job learns of its cancel with its lease's renewal: a short lease.
    await app.start_worker(concurrency=2, lease=1.5)
    run = await app.flows.start("cancel_me", 1)
    await asyncio.wait_for(started.wait(), 10)
    assert await app.flows.cancel(run.id)
    info = await run.wait(timeout=5)
    assert info.state == "cancelled"

    async def slow_cancelled() -> bool:
        return (await app.flows.get(run.id)).steps[0].state == "cancelled"

    await eventually(slow_cancelled, "the running step to be cancelled")
    assert ran == []
    with pytest.raises(FlowFailed):
        await run.result(timeout=1)
    assert not await app.flows.cancel(run.id)  # ended already


async def test_a_step_that_completes_after_its_run_was_cancelled_starts_nothing(
    app: Workhorse,
) -> None:
    ran: list[str] = []

    @app.task(name="quit", flow="quitting", entry=True)
    async def quit_(data: Any, ctx: Any) -> Any:
        await ctx.flow.cancel()
        return data  # completes: its lease learns of the cancel only at renewal

    @app.task(name="after_quit", flow="quitting", subscribes=["step:quit"])
    async def after_quit(data: Any) -> Any:
        ran.append("after_quit")

    await app.start_worker(concurrency=2)
    run = await app.flows.start("quitting", 1)
    assert (await run.wait(timeout=5)).state == "cancelled"

    async def quit_done() -> bool:
        steps = (await app.flows.get(run.id)).steps
        return bool(steps) and steps[0].state in ("completed", "cancelled")

    await eventually(quit_done, "the quitting step to finish")
    await asyncio.sleep(0.3)
    assert [s.step for s in (await app.flows.get(run.id)).steps] == ["quit"]
    assert ran == []


async def test_a_join_fires_once_under_concurrent_completions(app: Workhorse) -> None:
    ran: list[tuple[str, Any]] = []
    diamond(app, ran, pause=0.01)
    for _ in range(4):
        await app.start_worker(concurrency=4)
    runs = [await app.flows.start("diamond", {"n": i}) for i in range(100)]
    results = [await r.result(timeout=40) for r in runs]
    assert results == [{"d": i + 1 + i * 10} for i in range(100)]
    joins = [data for name, data in ran if name == "d"]
    assert len(joins) == 100
    assert sorted(j["step:b"] for j in joins) == list(range(1, 101))


async def test_restart_replays_the_run_from_its_input(app: Workhorse) -> None:
    ran: list[tuple[str, Any]] = []
    diamond(app, ran)
    await app.start_worker(concurrency=4)
    run = await app.flows.start("diamond", {"n": 1})
    assert await run.result(timeout=10) == {"d": 12}
    again = await app.flows.restart(run.id)
    assert again.id == run.id
    assert await again.result(timeout=10) == {"d": 12}
    assert sorted(name for name, _ in ran) == ["a", "a", "b", "b", "c", "c", "d", "d"]
    info = await app.flows.get(run.id)
    assert len(info.steps) == 4
    assert await app.flows.clear("diamond") == 1
    assert await app.flows.list("diamond") == []
    left = await app.client.backend.kv_scan("flows:")
    assert [k for k in left if run.id in k] == []  # nothing of the run is left


async def test_state_is_kept_per_run_and_cleaned_by_the_flow_rule(app: Workhorse) -> None:
    @app.task(name="put", flow="stateful", entry=True)
    async def put(data: Any, ctx: Any) -> Any:
        await ctx.state.set("seen", data)
        await ctx.state.set("kept", data)
        await ctx.state.set("total", data, scope="global")
        return await ctx.state.get("seen")

    @app.task(name="read", flow="stateful", subscribes=["step:put"])
    async def read(data: Any, ctx: Any) -> Any:
        got = [await ctx.state.get("seen"), await ctx.state.get("missing", "dflt")]
        await ctx.state.delete("seen")
        return [*got, await ctx.state.get("seen")]

    app.flows.define("stateful", cleanup="never")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("stateful", 7)
    assert await run.result(timeout=10) == {"read": [7, "dflt", None]}
    backend = app.client.backend
    mine = f"flows:state:run:{run.id}:"
    assert await backend.kv_scan(mine) == {mine + "kept": "7"}  # never: kept past the end
    assert await backend.kv_get("flows:state:global:total") == "7"
    assert await backend.kv_delete("flows:state:global:total")


async def test_on_complete_cleanup_removes_a_runs_state(app: Workhorse) -> None:
    @app.task(name="keep", flow="tidy", entry=True)
    async def keep(data: Any, ctx: Any) -> Any:
        await ctx.state.set("x", data)
        return data

    await app.start_worker(concurrency=2)
    run = await app.flows.start("tidy", 1)
    await run.result(timeout=10)
    backend = app.client.backend
    assert await backend.kv_scan(f"flows:state:run:{run.id}:") == {}
    assert await backend.kv_get(keys.live_key(run.id)) is None  # settled by its ender
    # The sweep settles every ended run its scan listed; one whose ender settled it since
    # (the common case in a busy flow) is looked at once, not its state scanned again.
    scans: list[str] = []
    scan = backend.kv_scan

    async def counted(prefix: str) -> dict[str, str]:
        scans.append(prefix)
        return await scan(prefix)

    backend.kv_scan = counted  # type: ignore[method-assign]
    try:
        await app.flows.engine.settle(run.id, "tidy", "completed")
    finally:
        del backend.kv_scan
    assert scans == []


async def test_a_step_that_runs_again_starts_nothing_twice(app: Workhorse) -> None:
    """At least once: an attempt that emitted, then failed, is retried; its emits and its
    completion start each follow-up once."""
    tries: list[int] = []
    seen: list[int] = []

    @app.task(name="flaky", flow="again", entry=True, emits=["item"], retries=2)
    async def flaky(data: Any, ctx: Any) -> str:
        tries.append(ctx.attempt)
        for x in data:
            await ctx.flow.emit("item", x)
        if ctx.attempt < 3:
            raise RuntimeError("after the emits")
        return "done"

    @app.task(name="each", flow="again", subscribes=["item"])
    async def each(x: int) -> None:
        seen.append(x)

    @app.task(name="last", flow="again", subscribes=["step:flaky"])
    async def last(data: Any) -> Any:
        seen.append(-1)
        return data

    await app.start_worker(concurrency=4)
    run = await app.flows.start("again", [1, 2])
    info = await run.wait(timeout=15)
    assert info.state == "completed"
    assert tries == [1, 2, 3]
    assert sorted(seen) == [-1, 1, 2]
    assert len(info.steps) == 4


async def test_the_sweep_ends_a_run_whose_last_checker_died(app: Workhorse) -> None:
    @app.task(name="only", flow="swept", entry=True)
    async def only(data: Any) -> Any:
        return data

    worker = app.worker(concurrency=1, burst=True)
    assert worker.steps is not None
    worker.steps = None  # finishes without the after-finish check: a killed checker
    run = await app.flows.start("swept", 1)
    await worker.run()
    worker.steps = app.flows.engine
    assert (await app.flows.get(run.id)).state == "running"
    assert (await app.flows.get(run.id)).steps[0].state == "completed"
    assert await app.flows.engine.sweep() == 1
    assert await run.result(timeout=1) == {"only": 1}


async def test_a_runs_end_event_is_stored_once_wait_returns(app: Workhorse) -> None:
    # A counted flow ends apart from its last finish: its end marker, its live entry, then
    # its event, whose store call is slowed here as on a loaded machine.
    @app.task(name="scatter", flow="slowend", entry=True, emits=["bit"])
    async def scatter(n: int, ctx: Any) -> int:
        await ctx.flow.emit("bit", n)
        return n

    @app.task(name="bit", flow="slowend", subscribes=["bit"])
    async def bit(i: int) -> int:
        return i

    backend = app.backend
    real = backend.publish

    async def slow(events: Any) -> Any:
        await asyncio.sleep(0.3)
        return await real(events)

    setattr(backend, "publish", slow)  # noqa: B010 (delays the store's own call)
    try:
        await app.start_worker(concurrency=2)
        run = await app.flows.start("slowend", 1)
        info = await run.wait(timeout=10)
        types = [e.type for e in await app.flows.events(run.id)]
    finally:
        delattr(backend, "publish")
    assert info.state == "completed"
    assert types.count("flow.completed") == 1, types


async def test_the_sweep_settles_a_run_whose_ender_died_and_sends_its_end(
    app: Workhorse,
) -> None:
    # A stateful run's ender sets its end marker, then clears its state, removes its live
    # entry and sends flow.completed; killed in between, a sweep does all three, once it
    # had its time (SETTLE_AFTER), and only once.
    @app.task(name="keeper", flow="kept", entry=True)
    async def keeper(data: Any, ctx: Any) -> Any:
        await ctx.state.set("x", data)
        return data

    @app.task(name="after", flow="kept", subscribes=["step:keeper"], wait={"signal": "go"})
    async def after(data: Any) -> Any:
        return data

    app.flows.define("kept", cleanup="on_complete")
    await app.start_worker(concurrency=1)
    backend = app.client.backend
    engine = app.flows.engine
    young = await app.flows.start("kept", 1)
    old = await app.flows.start("kept", 2)

    async def waiting() -> bool:
        return all([(await app.flows.get(r.id)).waiting for r in (young, old)])

    await eventually(waiting, "both runs' second step to wait")
    # The ender's first write only, as a worker killed right after it leaves it.
    for run, age in ((young, 1.0), (old, flows_engine.SETTLE_AFTER + 1)):
        mark = records.end_mark("completed", time.time() - age, None)
        assert await backend.set_if_absent(keys.end_key(run.id, 0), mark)
    await engine.sweep()
    await engine.sweep()

    async def ends(run_id: str) -> list[str]:
        return [e.type for e in await app.flows.events(run_id) if e.type.startswith("flow.")]

    async def sent() -> bool:  # Redis's readers hold back the current millisecond's events
        return await ends(old.id) == ["flow.started", "flow.completed"]

    await eventually(sent, "the sweep to send the old run's flow.completed, once")
    assert await ends(young.id) == ["flow.started"]
    for run, settled in ((young, False), (old, True)):
        live = await backend.kv_get(keys.live_key(run.id))
        assert (live is None) == settled
        state = await backend.kv_scan(f"flows:state:run:{run.id}:")
        assert (state == {}) == settled, state


async def test_flow_events_reach_durable_hooks(app: Workhorse) -> None:
    got: list[Any] = []

    others: list[Any] = []

    @app.on("flow.*", flow="hook*")
    async def hook(event: Any) -> None:
        got.append(event)

    @app.on("flow.*", flow="other")
    def other(event: Any) -> None:
        others.append(event)

    @app.task(name="hooked", flow="hooked", entry=True)
    async def hooked(data: Any) -> Any:
        return data

    await app.start_worker(concurrency=1)
    await app.start_listener(poll_interval=0.02, from_start=True)
    run = await app.flows.start("hooked", 1)
    await run.result(timeout=10)

    async def both() -> bool:
        return len(got) >= 2

    await eventually(both, "flow.started and flow.completed at the hook")
    await app.stop_listener()
    assert [(e.type, e.extra["run"], e.extra["flow"]) for e in got[:2]] == [
        ("flow.started", run.id, "hooked"),
        ("flow.completed", run.id, "hooked"),
    ]
    assert others == []


async def test_signals_resume_waits_before_and_after_they_start(app: Workhorse) -> None:
    @app.task(name="order", flow="paying", entry=True)
    async def order(data: Any) -> Any:
        return data

    @app.task(
        name="ship_it",
        flow="paying",
        subscribes=["step:order"],
        wait={"signal": "paid", "key": "id"},
    )
    async def ship_it(data: Any) -> Any:
        return data["signal"]

    await app.start_worker(concurrency=2)
    await app.flows.signal("paid", "early", key=1)
    early = await app.flows.start("paying", {"id": 1})
    late = await app.flows.start("paying", {"id": 2})

    async def waiting() -> bool:
        return bool((await app.flows.get(late.id)).waits)

    await eventually(waiting, "the second run to wait for its signal")
    assert await app.flows.signal("paid", "late", key=2) == 1
    assert await early.result(timeout=10) == {"ship_it": "early"}
    assert await late.result(timeout=10) == {"ship_it": "late"}


async def test_a_flows_step_timeout_applies_where_the_task_sets_none(app: Workhorse) -> None:
    @app.task(name="hangs", flow="timed", entry=True)
    async def hangs(data: Any) -> Any:
        await asyncio.sleep(30)

    @app.task(name="own", flow="timed2", entry=True, timeout=20)
    async def own(data: Any) -> Any:
        await asyncio.sleep(0.3)
        return "ok"

    app.flows.define("timed", step_timeout=0.2)
    app.flows.define("timed2", step_timeout=0.1)
    await app.start_worker(concurrency=2)
    run = await app.flows.start("timed", 1)
    with pytest.raises(FlowFailed) as failed:
        await run.result(timeout=10)
    assert failed.value.run.error is not None
    assert failed.value.run.error["type"] == "TimeoutError"
    other = await app.flows.start("timed2", 1)
    assert await other.result(timeout=10) == {"own": "ok"}


async def test_state_ttl_and_cleanup_after_a_failure(app: Workhorse) -> None:
    @app.task(name="keep_then_fail", flow=["kept", "swept_away"], entry=True)
    async def keep_then_fail(data: Any, ctx: Any) -> Any:
        await ctx.state.set("kept", 1)
        await ctx.state.set("brief", 1, ttl=0.3)
        assert await ctx.state.get("brief") == 1
        await asyncio.sleep(0.6)
        assert await ctx.state.get("brief") is None  # its ttl passed
        raise RuntimeError("fail the run")

    app.flows.define("kept")  # on_complete: a failed run keeps its state, to look at
    app.flows.define("swept_away", cleanup="immediate")
    await app.start_worker(concurrency=2)
    kept = await app.flows.start("kept", 1)
    swept = await app.flows.start("swept_away", 1)
    for run in (kept, swept):
        with pytest.raises(FlowFailed) as failed:
            await run.result(timeout=10)
        assert failed.value.run.error is not None
        assert "fail the run" in failed.value.run.error["message"]
    backend = app.client.backend
    assert await backend.kv_scan(f"flows:state:run:{kept.id}:") == {
        f"flows:state:run:{kept.id}:kept": "1"
    }
    assert await backend.kv_scan(f"flows:state:run:{swept.id}:") == {}


async def test_steps_write_their_own_events_readable_in_order_per_run(app: Workhorse) -> None:
    """step.started|completed|retrying|failed, emit and state events, each naming the run,
    the flow and the step, in the order they happened."""

    @app.task(name="begin", flow="evented", entry=True, emits=["ping"])
    async def begin(data: Any, ctx: Any) -> Any:
        await ctx.state.set("k", 1)
        await ctx.state.delete("k")
        await ctx.flow.emit("ping", {"n": data})
        return data

    @app.task(name="flap", flow="evented", subscribes=["ping"], retries=1)
    async def flap(data: Any, ctx: Any) -> Any:
        if ctx.attempt == 1:
            raise RuntimeError("first try")
        return data

    @app.task(name="tail", flow="evented", subscribes=["step:begin"])
    async def tail(data: Any) -> Any:
        raise RuntimeError("for good")

    app.flows.define("evented", on_failure="continue")
    await app.start_worker(concurrency=2)
    run = await app.flows.start("evented", 5)
    assert (await run.wait(timeout=10)).state == "completed"

    async def logged() -> list[Any]:
        got = await app.flows.events(run.id)
        return got if got and got[-1].type == "flow.completed" else []

    got = await eventually(logged, "the run's events up to flow.completed")
    for e in got:
        assert e.data["run"] == run.id and e.data["flow"] == "evented"
    by_step: dict[str | None, list[str]] = {}
    for e in got:
        by_step.setdefault(e.data.get("step"), []).append(e.type)
    assert by_step[None] == ["flow.started", "flow.completed"]
    assert by_step["begin"] == ["step.started", "state", "state", "emit", "step.completed"]
    assert by_step["flap"] == ["step.started", "step.retrying", "step.started", "step.completed"]
    assert by_step["tail"] == ["step.started", "step.failed"]
    state = [e.data for e in got if e.type == "state"]
    assert [(d["key"], d["op"], d["scope"]) for d in state] == [
        ("k", "set", "run"),
        ("k", "deleted", "run"),
    ]
    emit = next(e for e in got if e.type == "emit")
    assert emit.data["trigger"] == "ping"
    assert emit.data["size"] == len(b'{"n":5}')
    retrying = next(e for e in got if e.type == "step.retrying")
    assert "first try" in retrying.data["error"]["message"]
    failed = next(e for e in got if e.type == "step.failed")
    assert "for good" in failed.data["error"]["message"]
    # In cause order: a step's completion is logged before the steps it starts.
    types = [(e.type, e.data.get("step")) for e in got]
    assert types.index(("step.completed", "begin")) < types.index(("step.started", "tail"))
    assert types.index(("emit", "begin")) < types.index(("step.started", "flap"))
    # The jobs' own events are still there, and not the run's.
    assert all(not e.type.startswith("job.") for e in got)


async def test_hooks_filter_step_events_by_flow(app: Workhorse) -> None:
    got: list[Any] = []

    @app.on("step.completed", flow="kept*")
    async def hook(event: Any) -> None:
        got.append(event)

    @app.task(name="one", flow=["kept", "dropped"], entry=True)
    async def one(data: Any) -> Any:
        return data

    await app.start_worker(concurrency=2)
    await app.start_listener(poll_interval=0.02, from_start=True)
    dropped = await app.flows.start("dropped", 1)
    await dropped.result(timeout=10)
    kept = await app.flows.start("kept", 2)
    await kept.result(timeout=10)

    async def delivered() -> bool:
        return len(got) >= 1

    await eventually(delivered, "step.completed of the kept flow at the hook")
    await asyncio.sleep(0.2)  # a wrongly delivered event of the other flow would come too
    await app.stop_listener()
    assert [(e.type, e.extra["run"], e.extra["flow"], e.extra["step"]) for e in got] == [
        ("step.completed", kept.id, "kept", "one")
    ]
    assert got[0].task == "one"


async def test_state_kept_by_an_earlier_step_is_cleared_when_the_last_step_ends_the_run(
    app: Workhorse,
) -> None:
    """The last step of a closed flow ends its run without looking at the store: state a
    step before it kept, in another attempt, is still cleared (on_complete)."""

    @app.task(name="first", flow="handover", entry=True)
    async def first(data: Any, ctx: Any) -> Any:
        await ctx.state.set("kept", data)
        return data

    @app.task(name="second", flow="handover", subscribes=["step:first"])
    async def second(data: Any, ctx: Any) -> Any:
        return await ctx.state.get("kept")

    assert app.flows["handover"].last() == "second"
    await app.start_worker(concurrency=2)
    run = await app.flows.start("handover", 3)
    assert await run.result(timeout=10) == {"second": 3}  # once the ender cleaned up
    assert await app.client.backend.kv_scan(f"flows:state:run:{run.id}:") == {}
    assert await app.client.backend.kv_scan(f"flows:live:{run.id}") == {}


async def test_ttl_cleanup_keeps_a_live_runs_state_through_retention_until_it_expires(
    app: Workhorse,
) -> None:
    """cleanup="ttl": a run's state stays while the run lives, whatever retention removes
    meanwhile (its finished steps' records, ended runs), and past the run's end; it goes
    once its TTL passed."""

    @app.task(name="note", flow=["lasting", "fleeting"], entry=True)
    async def note(data: Any, ctx: Any) -> Any:
        await ctx.state.set("noted", data["n"])
        return data

    @app.task(
        name="hold",
        flow=["lasting", "fleeting"],
        subscribes=["step:note"],
        wait={"signal": "go", "key": "n"},
    )
    async def hold(data: Any, ctx: Any) -> Any:
        return await ctx.state.get("noted")

    app.flows.define("lasting", cleanup="ttl", state_ttl=3600)
    app.flows.define("fleeting", cleanup="ttl", state_ttl=0.3)
    await app.start_worker(concurrency=2)
    backend = app.client.backend
    live = await app.flows.start("lasting", {"n": 1})

    async def purged() -> bool:  # the entry step's record, once its outcome is written
        return await app.purge(states=["completed"], older_than=0) == 1

    await eventually(purged, "retention to remove the run's finished entry step")
    assert (await app.flows.get(live.id)).waiting
    assert await app.flows.clear() == 0  # no run has ended
    await app.flows.engine.sweep()
    state = f"flows:state:run:{live.id}:"
    assert await backend.kv_scan(state) == {state + "noted": "1"}
    assert await app.flows.signal("go", None, key=1) == 1
    assert await live.result(timeout=10) == {"hold": 1}  # the live run read its state
    assert await backend.kv_scan(state) == {state + "noted": "1"}  # its TTL has not passed

    await app.flows.signal("go", None, key=2)
    brief = await app.flows.start("fleeting", {"n": 2})
    await brief.result(timeout=10)

    async def expired() -> bool:
        return await backend.kv_scan(f"flows:state:run:{brief.id}:") == {}

    await eventually(expired, "the state of a cleanup='ttl' run to expire")
