"""A completed step's new jobs of plain steps go with its outcome, in the finish's store
call, where the store can (``Capabilities.finish_followups``): a chain's and a fan-out's
steps make no call of their own to start the next, and the next's ``job.queued`` comes
after its cause's ``job.completed``. Redis Cluster keeps its enqueue during the attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from workhorse import Workhorse
from workhorse.errors import PayloadError, error_info
from workhorse.flows import FlowFailed, keys
from workhorse.flows.engine import EMITS_PER_WRITE

from .support import eventually, line_flow, settled_log


def _count_enqueue_claimed(app: Workhorse) -> list[int]:
    """Counts the worker's enqueue_claimed calls (not the test's: starting a run makes one)."""
    backend = app.backend
    ours = asyncio.current_task()
    calls: list[int] = []
    real = backend.enqueue_claimed

    async def counted(items: Sequence[Any]) -> Any:
        if asyncio.current_task() is not ours:
            calls.append(len(items))
        return await real(items)

    setattr(backend, "enqueue_claimed", counted)  # noqa: B010 (counts calls, the store answers)
    return calls


async def test_a_chains_followups_go_with_its_steps_outcomes(app: Workhorse) -> None:
    line_flow(app, 3)
    calls = _count_enqueue_claimed(app)
    try:
        await app.start_worker(concurrency=4)
        run = await app.flows.start("line", 1)
        info = await run.wait(timeout=10)
    finally:
        delattr(app.backend, "enqueue_claimed")
    assert info.state == "completed"
    assert [(s.step, s.output) for s in info.steps] == [("s1", 2), ("s2", 3), ("s3", 4)]
    capable = app.backend.capabilities.finish_followups  # not on Redis Cluster
    assert calls == ([] if capable else [1, 1])
    # Each follow-up's job.queued after its cause's job.completed, where they go together.
    log = [(e.type, e.task) for e in await settled_log(app.backend) if e.job_id]
    for cause, then in (("s1", "s2"), ("s2", "s3")):
        done, queued = log.index(("job.completed", cause)), log.index(("job.queued", then))
        assert (done < queued) if capable else (queued < done), log


async def test_a_fan_out_to_plain_steps_goes_with_its_outcome(app: Workhorse) -> None:
    """Two final steps: a flow that counts its live steps, whose count still ends it."""

    @app.task(name="root", flow="fork", entry=True)
    async def root(n: int) -> int:
        return n

    @app.task(name="left", flow="fork", subscribes=["step:root"])
    async def left(n: int) -> int:
        return n - 1

    @app.task(name="right", flow="fork", subscribes=["step:root"])
    async def right(n: int) -> int:
        return n + 1

    calls = _count_enqueue_claimed(app)
    try:
        await app.start_worker(concurrency=4)
        runs = [await app.flows.start("fork", n) for n in range(5)]
        infos = [await r.wait(timeout=10) for r in runs]
    finally:
        delattr(app.backend, "enqueue_claimed")
    assert app.flows.graph.flow("fork").counted()
    for n, info in enumerate(infos):
        assert info.state == "completed"
        outputs: dict[str, Any] = {s.step: s.output for s in info.steps}
        assert outputs == {"root": n, "left": n - 1, "right": n + 1}
    capable = app.backend.capabilities.finish_followups  # not on Redis Cluster
    assert calls == ([] if capable else [2] * 5)


def _fan_flow(app: Workhorse, parts: int, pause: float = 0.0) -> dict[str, Any]:
    """Flow "spread": an entry emitting ``parts`` triggers in a loop (sleeping ``pause``
    after the first, so that its write is done before the next emit), each a step; what
    the steps saw."""
    seen: dict[str, Any] = {"parts": [], "entry_done": False, "part_before_end": False}

    @app.task(name="spread", flow="spread", entry=True, emits=["part"])
    async def spread(n: int, ctx: Any) -> int:
        for i in range(parts):
            await ctx.flow.emit("part", i)
            if i == 0 and pause:
                await asyncio.sleep(pause)
        seen["entry_done"] = True
        return n

    @app.task(name="part", flow="spread", subscribes=["part"])
    async def part(i: int) -> int:
        if not seen["entry_done"]:
            seen["part_before_end"] = True
        seen["parts"].append(i)
        return i

    return seen


def _refuse_the_first_parts_write(backend: Any) -> list[int]:
    """The store refuses the first write of "part" jobs (a fault on the real store, undone
    by deleting the attribute); the sizes of the writes refused."""
    real = backend.enqueue_claimed
    refused: list[int] = []

    async def once_refused(items: Sequence[Any]) -> Any:
        if not refused and any(new.task == "part" for _, new in items):
            refused.append(len(items))
            raise ConnectionError("the store went away")
        return await real(items)

    setattr(backend, "enqueue_claimed", once_refused)  # noqa: B010 (a fault, the store answers)
    return refused


async def test_a_loop_of_emits_is_one_store_call(app: Workhorse) -> None:
    seen = _fan_flow(app, 6)
    calls = _count_enqueue_claimed(app)
    try:
        await app.start_worker(concurrency=4)
        info = await (await app.flows.start("spread", 1)).wait(timeout=10)
    finally:
        delattr(app.backend, "enqueue_claimed")
    assert info.state == "completed"
    assert sorted(seen["parts"]) == list(range(6))
    assert calls == [6]


async def test_an_emit_starts_its_step_while_the_emitter_runs(app: Workhorse) -> None:
    """The emits before the handler waits are written then, not held until its end."""
    seen = _fan_flow(app, 3, pause=1.0)
    await app.start_worker(concurrency=4)
    info = await (await app.flows.start("spread", 1)).wait(timeout=10)
    assert info.state == "completed"
    assert sorted(seen["parts"]) == [0, 1, 2]
    assert seen["part_before_end"]


async def test_emits_not_written_make_the_step_run_again(app: Workhorse) -> None:
    """The store refuses the emits' write once: the emitting step runs again (its try
    given back) and starts each step once."""
    seen = _fan_flow(app, 4)
    backend = app.backend
    refused = _refuse_the_first_parts_write(backend)
    try:
        await app.start_worker(concurrency=4)
        run = await app.flows.start("spread", 1)
        info = await run.wait(timeout=15)
    finally:
        delattr(backend, "enqueue_claimed")
    assert refused == [4]
    assert info.state == "completed"
    assert sorted(seen["parts"]) == [0, 1, 2, 3]
    (entry,) = info.step("spread")
    assert entry.attempts == 1  # the refused write gave its try back


async def test_a_long_loop_of_emits_is_written_in_bounded_batches(app: Workhorse) -> None:
    seen = _fan_flow(app, EMITS_PER_WRITE * 2 + 100)
    calls = _count_enqueue_claimed(app)
    try:
        await app.start_worker(concurrency=50)
        info = await (await app.flows.start("spread", 1)).wait(timeout=60)
    finally:
        delattr(app.backend, "enqueue_claimed")
    assert info.state == "completed"
    assert sorted(seen["parts"]) == list(range(EMITS_PER_WRITE * 2 + 100))
    assert calls == [EMITS_PER_WRITE, EMITS_PER_WRITE, 100]


async def test_a_failed_write_between_emits_is_not_passed_over(app: Workhorse) -> None:
    """The first emit's write fails while the handler waits; the next emit starts a new
    write, which succeeds: the step still runs again, so the first emit's step runs too."""
    seen = _fan_flow(app, 3, pause=0.3)
    backend = app.backend
    refused = _refuse_the_first_parts_write(backend)
    try:
        await app.start_worker(concurrency=4)
        info = await (await app.flows.start("spread", 1)).wait(timeout=15)
    finally:
        delattr(backend, "enqueue_claimed")
    assert refused == [1]
    assert info.state == "completed"
    assert sorted(set(seen["parts"])) == [0, 1, 2]


class Pair(BaseModel):
    a: int
    b: float = 0.5


async def takes_any(data: Any) -> Any:  # no input type: its payload kept as it came
    return data


async def takes_int(n: int) -> int:
    return n


async def takes_float(x: float) -> float:
    return x


async def takes_str(s: str) -> str:
    return s


async def takes_bool(b: bool) -> bool:
    return b


async def takes_optional(n: int | None) -> int | None:
    return n


async def takes_pair(p: Pair) -> Pair:
    return p


async def takes_floats(xs: list[float]) -> list[float]:
    return xs


# Each follow-up's input type, with outputs of its cause it takes (some of which it
# converts: "7" to 7, 5 to 5.0, True to 1, a field added or dropped) and outputs it refuses.
FOLLOWERS: dict[str, tuple[Any, list[Any], list[Any]]] = {
    "any": (
        takes_any,
        [5, "x", None, True, 1.5, -0.0, 1e16, 2**63, 'é\u2028\x00"', {"b": [1.0, 2], "a": {}}],
        [],
    ),
    "int": (takes_int, [5, 5.0, "7", True, -(2**63)], ["x", 1.5, None]),
    "float": (takes_float, [5, 1.5, -0.0, "2.5", 1e16], ["x", None]),
    "str": (takes_str, ["x", "é\u2028", ""], [5, None]),
    "bool": (takes_bool, [True, False, 1, "yes"], ["x", 2]),
    "optional": (takes_optional, [None, 3, "4"], ["x"]),
    "pair": (takes_pair, [{"a": 1}, {"a": "3", "b": 2, "extra": [1]}, {"b": 1.0, "a": 2}], [{}]),
    "floats": (takes_floats, [[1, 2.5], []], [["x"]]),
}


async def test_a_followups_payload_is_what_enqueue_of_its_causes_output_writes(
    app: Workhorse,
) -> None:
    """A follow-up's payload, byte for byte, is what enqueueing its cause's output to its
    task writes, whatever the task's input type makes of it; an output the type refuses
    fails the cause with enqueue's reason."""

    async def cause(data: Any) -> Any:
        return data

    tasks = {}
    for kind, (fn, _, _) in FOLLOWERS.items():
        app.add_task(cause, name=f"{kind}_cause", flow=kind, entry=True)
        tasks[kind] = app.add_task(
            fn, name=f"{kind}_next", flow=kind, subscribes=[f"step:{kind}_cause"], queue="priority"
        )
    await app.start_worker(queues=["default"], concurrency=4)  # the follow-ups stay queued
    taken = [(kind, output) for kind, (_, outputs, _) in FOLLOWERS.items() for output in outputs]
    for kind, output in taken:
        await tasks[kind].enqueue(output)
        await app.flows.start(kind, output)

    found: dict[bool, list[tuple[str, bytes]]] = {True: [], False: []}  # by: a step's job
    while len(found[True]) < len(taken):
        leases = await eventually(
            lambda: app.backend.claim(["priority"], "test", 2 * len(taken), 30), "the follow-ups"
        )
        for lease in leases:
            found[keys.run_of(lease.job_id) is not None].append((lease.task, lease.data))
    assert sorted(found[True]) == sorted(found[False])

    for kind, (_, _, refused) in FOLLOWERS.items():
        for output in refused:
            with pytest.raises(PayloadError) as by_enqueue:
                await tasks[kind].enqueue(output)
            run = await app.flows.start(kind, output)
            with pytest.raises(FlowFailed) as failed:
                await run.result(timeout=10)
            error = failed.value.run.error
            assert error is not None and error["step"] == f"{kind}_cause"
            reason = PayloadError(f"step {kind}_cause's follow-ups: {by_enqueue.value}")
            assert error["message"] == error_info(reason, tb=False)["message"], (kind, output)
