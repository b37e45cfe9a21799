"""The task catalog (``workhorse tasks``), workers publishing their tasks with their
heartbeat (``status`` warns about a task no live worker knows), and a worker started
paused and resumed from the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from workhorse import JobState, Workhorse

from .ops_app import make
from .procs import HERE, workhorse


def cli(*args: str) -> tuple[int, Any, str]:
    done = subprocess.run(
        [sys.executable, "-m", "workhorse", *args],
        capture_output=True,
        timeout=30,
        env={"PYTHONPATH": str(HERE), "PATH": "/usr/bin:/bin"},
    )
    text = done.stdout.decode()
    return (
        done.returncode,
        orjson.loads(text) if text.startswith(("{", "[")) else text,
        done.stderr.decode(),
    )


def test_tasks_lists_queue_runtime_options_and_schedule() -> None:
    code, entries, _ = cli("tasks", "ops_app:app", "--url", "memory://", "--json")
    assert code == 0
    by_name = {e["name"]: e for e in entries}
    assert sorted(by_name) == ["boom", "flaky", "ok"]
    assert by_name["flaky"]["options"] == {"retries": 1}
    assert by_name["ok"]["queue"] == "default"
    assert by_name["ok"]["runtime"] == "inline"
    assert by_name["ok"]["schedule"] is None


def test_tasks_shows_schedules_limits_and_runtimes() -> None:
    code, entries, _ = cli("tasks", "ops_app:catalog_app", "--url", "memory://", "--json")
    assert code == 0
    by_name = {e["name"]: e for e in entries}
    weekly = by_name["weekly_report"]
    assert weekly["queue"] == "priority"
    assert weekly["schedule"] == {"cron": "0 9 * * 1", "timezone": "UTC", "data": None}
    assert weekly["options"] == {"timeout": 30.0, "singleton": True}
    assert weekly["description"] == "Mail the weekly report."
    resize = by_name["resize"]
    assert resize["runtime"] == "process"
    assert resize["options"] == {"retries": 3, "concurrency": 2, "rate": "10/60s"}
    assert resize["workers"] == 0  # the store answers: no live worker knows it


def test_tasks_shows_each_steps_flow_entry_subscriptions_and_emits() -> None:
    code, entries, _ = cli("tasks", "ops_app:flow_app", "--url", "memory://", "--json")
    assert code == 0
    by_name = {e["name"]: e for e in entries}
    assert by_name["ok"]["flows"] == []  # a plain task is no step
    assert by_name["register"]["flows"] == [
        {"flow": "signup", "entry": True, "subscribes": [], "emits": ["welcome"], "wait": None}
    ]
    assert by_name["send_welcome"]["flows"] == [
        {"flow": "signup", "entry": False, "subscribes": ["welcome"], "emits": [], "wait": None}
    ]
    assert by_name["follow_up"]["flows"][0]["wait"] == "delay 0.05s"
    assert by_name["follow_up"]["flows"][0]["subscribes"] == ["step:register"]
    code, text, _ = cli("tasks", "ops_app:flow_app", "--url", "memory://")
    assert code == 0
    assert "signup: entry; emits welcome" in text
    assert "signup: on step:register; waits for delay 0.05s" in text


@pytest.mark.slow
async def test_a_worker_publishes_the_flows_it_runs(tmp_path: Path) -> None:
    from .ops_app import make_flow

    url = f"sqlite:///{tmp_path / 'store.db'}"
    app = make_flow(url=url)
    try:
        with workhorse("worker", "ops_app:flow_app", "--url", url, log=tmp_path / "w.log"):
            workers = await wait_for(app.workers)
        assert workers, (tmp_path / "w.log").read_text()
        assert workers[0].flows == ["signup"]
        assert {"register", "send_welcome", "follow_up"} <= set(workers[0].tasks)
    finally:
        await app.close()


async def wait_for(probe: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_paused_worker_claims_nothing_until_resumed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    app = make(url=url)
    stranger = Workhorse(url=url)

    @stranger.task
    async def unknown_here() -> None: ...

    try:
        handle = await app.enqueue("ok", {"n": 5})
        with workhorse("worker", "ops_app:app", "--url", url, "--paused", log=tmp_path / "w.log"):
            workers = await wait_for(app.workers)
            assert len(workers) == 1
            w = workers[0]
            assert w.tasks == ["boom", "flaky", "ok"]  # published with the heartbeat
            await wait_for(lambda: _paused(app))
            await asyncio.sleep(1.0)
            job = await app.get_job(handle.id)
            assert job is not None and job.state is JobState.QUEUED  # nothing claimed

            await stranger.enqueue("unknown_here")
            code, status, _ = cli("status", "--url", url, "--json")
            assert code == 0
            assert status["unknown_tasks"] == ["unknown_here"]
            assert status["workers"][0]["paused"] is True

            code, _, err = cli("resume", "--worker", w.id, "--url", url)
            assert code == 0, err
            done = await app.wait(handle.id, 10)
            assert done.result == 5
            assert not await _paused(app)
        code, _, err = cli("resume", "--worker", "no-such-worker", "--url", url)
        assert code == 1
        assert "no live worker 'no-such-worker'" in err
    finally:
        await app.close()
        await stranger.close()


async def _paused(app: Workhorse) -> bool:
    return any(w.paused for w in await app.workers())
