"""A flow step in the process and command runtimes (Node.js and Python programs):
``ctx.flow`` and ``ctx.state`` work there (served by the worker over the channel), and its
emits and completion start the next steps as inline steps' do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from workhorse import JobContext, Workhorse

from . import jobs
from .conftest import NODE


async def test_a_process_step_emits_and_keeps_state(app: Workhorse) -> None:
    seen: list[Any] = []
    app.add_task(
        jobs.flow_split, name="split", flow="mixed", entry=True, emits=["item"], runtime="process"
    )

    @app.task(name="each", flow="mixed", subscribes=["item"])
    async def each(x: int, ctx: JobContext) -> int:
        seen.append((x, await ctx.state.get("count")))
        return x

    @app.task(name="after", flow="mixed", subscribes=["step:split"])
    async def after(out: dict[str, Any]) -> Any:
        return out

    await app.start_worker(concurrency=4)
    run = await app.flows.start("mixed", [4, 5])
    result = (await run.result(timeout=30))["after"]
    await app.stop_workers()
    assert result["pid"] != os.getpid()
    assert result["run"] == run.id
    assert result["step"] == "split"
    assert result["count"] == 2
    assert result["missing"] == "default"
    assert sorted(seen) == [(4, 2), (5, 2)]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "command"


@pytest.mark.parametrize(
    "argv",
    [[NODE, str(EXAMPLES / "flow_step.js")], ["python3", str(EXAMPLES / "flow_step.py")]],
    ids=["node", "python"],
)
async def test_a_command_step_emits_and_keeps_state(app: Workhorse, argv: list[str]) -> None:
    seen: list[Any] = []

    def split(items: list[int]) -> dict[str, Any]: ...  # runs as the command

    app.add_task(
        split,
        name="csplit",
        flow="cmd",
        entry=True,
        emits=["item"],
        runtime="command",
        command=argv,
    )

    @app.task(name="citem", flow="cmd", subscribes=["item"])
    async def citem(x: int, ctx: JobContext) -> int:
        seen.append((x, await ctx.state.get("count")))
        return x

    @app.task(name="cafter", flow="cmd", subscribes=["step:csplit"])
    async def cafter(out: dict[str, Any]) -> Any:
        return out

    await app.start_worker(concurrency=4)
    run = await app.flows.start("cmd", [1, 2, 3])
    result = (await run.result(timeout=30))["cafter"]
    await app.stop_workers()
    assert result == {"run": run.id, "step": "csplit", "count": 3}
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]
