"""``workhorse flows APP`` lists runs and ``workhorse flow APP RUN_ID`` draws one as a tree
of its steps with their states."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from rich.console import Console

from workhorse import Workhorse
from workhorse.cli import main
from workhorse.cli.flows import run_tree
from workhorse.demo_tasks import app

APP = "workhorse.demo_tasks:app"


async def one_run(url: str) -> str:
    app.configure(url=url)
    async with app:
        worker = app.worker(queues=["default", "batch"], burst=True)
        run = await app.flows.start("order", {"id": "B-2", "total": 5})
        await worker.run()
        assert await run.result(timeout=5) == {"ship": "order B-2 shipped, 5 charged"}
        return run.id


def test_flows_lists_runs_and_flow_draws_the_tree(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    run_id = asyncio.run(one_run(url))
    listed = CliRunner().invoke(main, ["flows", APP, "--url", url])
    assert listed.exit_code == 0, listed.output
    assert run_id in listed.output
    assert "completed" in listed.output
    tree = CliRunner().invoke(main, ["flow", APP, run_id, "--url", url])
    assert tree.exit_code == 0, tree.output
    lines = tree.output.splitlines()
    assert lines[0] == f"order {run_id} completed"
    assert [line.strip("│├└─ ") for line in lines[1:]] == [
        "receive completed",
        "charge completed",
        "ship completed",
        "reserve completed",
        "ship completed",
    ]
    missing = CliRunner().invoke(main, ["flow", APP, "0" * 16, "--url", url])
    assert missing.exit_code == 1
    assert "no flow run" in missing.output


async def test_the_tree_names_the_triggers_an_entry_starts_on() -> None:
    own = Workhorse("memory://")

    @own.task(name="signup", flow="onboard", entry=True, triggers=["user.signup", "user.invited"])
    async def signup(data: Any) -> Any:
        return data

    @own.task(name="welcome", flow="onboard", subscribes=["step:signup"])
    async def welcome(data: Any) -> Any:
        return data

    async with own:
        (run,) = await own.flows.trigger("user.signup", {"user": "ada"})
        info = await run.info()
    console = Console(width=120, no_color=True)
    with console.capture() as shown:
        console.print(run_tree(info, own.flows["onboard"]))
    lines = [line.strip("│├└─ ") for line in shown.get().splitlines()]
    assert lines[1] == "signup queued on user.signup, user.invited"
    assert lines[2] == "welcome not started"
