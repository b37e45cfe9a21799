"""The hook commands as a user runs them: ``workhorse listen`` as a real process (stopped
with SIGTERM), ``workhorse hooks`` listing lag and a parked event, ``hooks replay``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from workhorse import Workhorse
from workhorse.cli import main

APP = """
from pathlib import Path
from workhorse import JobEvent, Workhorse

app = Workhorse()
HERE = Path(__file__).parent


@app.task
async def add(n: int) -> int:
    return n + 100


@app.on("job.completed", task="add", name="ledger")
def ledger(event: JobEvent) -> None:
    if event.data == 2 and (HERE / "broken").exists():
        raise ConnectionError("ledger database is down")
    with open(HERE / "ledger.txt", "a") as f:
        f.write(f"{event.data} {event.result}\\n")
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str, str]]:
    module = f"hook_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in list(os.environ):
        if name.startswith("WORKHORSE_"):
            monkeypatch.delenv(name)
    yield tmp_path, module, f"sqlite:///{tmp_path / 'hooks.db'}"
    sys.modules.pop(module, None)


def cli(*argv: str) -> Any:
    result = CliRunner().invoke(main, list(argv), prog_name="workhorse")
    assert result.exit_code == 0, (result.output, result.exception)
    return result


async def run_jobs(url: str, items: list[int]) -> None:
    producer = Workhorse(url, poll_interval=0.05)

    @producer.task
    async def add(n: int) -> int:
        return n + 100

    async with producer:
        await producer.start_worker()
        for n in items:
            h = await add.enqueue(n)
            await producer.wait(h.id, 10)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(probe: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def caught_up(report_json: str) -> bool:
    report = orjson.loads(report_json)
    return bool(report["parked"]) and all(g["behind"] == 0 for g in report["groups"])


def test_listen_parks_a_failing_event_hooks_lists_it_and_replay_delivers_it(
    folder: tuple[Path, str, str],
) -> None:
    here, module, url = folder
    (here / "broken").touch()
    env = {
        **os.environ,
        "WORKHORSE_URL": url,
        "WORKHORSE_HOOK_RETRY_DELAY": "0.01",
        "WORKHORSE_HOOK_POLL_INTERVAL": "0.05",
    }
    asyncio.run(run_jobs(url, []))  # the store exists before the listener looks at it
    proc = subprocess.Popen(
        [sys.executable, "-m", "workhorse", "listen", f"{module}:app", "--from-start"],
        cwd=here,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        asyncio.run(run_jobs(url, [1, 2, 3]))
        wait_for(lambda: len(lines(here / "ledger.txt")) == 2, "two ledger lines")
        # The listener saves its cursors after it calls the hooks: wait for both to show.
        wait_for(
            lambda: caught_up(cli("hooks", f"{module}:app", "--url", url, "--json").stdout),
            "the parked event and the group's saved cursors",
        )
        report = orjson.loads(cli("hooks", f"{module}:app", "--url", url, "--json").stdout)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    text = " ".join(output.decode().split())  # the log is wrapped to the terminal's width
    assert proc.returncode == 0, text
    assert "stopped: 2 hook calls, 1 parked" in text
    assert "ledger database is down" in text  # the parking is logged with the error

    [parked] = report["parked"]
    assert parked["hook"] == "ledger"
    assert parked["attempts"] == 3
    assert parked["error"]["type"] == "ConnectionError"
    assert parked["event"]["data"] == 2
    [group] = report["groups"]
    assert group["group"] == "app"
    assert group["parked"] == 1
    assert group["behind"] == 0

    shown = cli("hooks", f"{module}:app", "--url", url).stdout
    assert parked["id"] in shown
    assert "ConnectionError" in shown

    (here / "broken").unlink()
    cli("hooks", "replay", f"{module}:app", parked["id"], "--url", url)
    assert sorted(lines(here / "ledger.txt")) == ["1 101", "2 102", "3 103"]
    status = orjson.loads(cli("status", "--url", url, "--json").stdout)
    assert status["hooks"][0]["parked"] == 0
    assert status["hooks"][0]["behind"] == 0
    assert status["hooks"][0]["lost_incidents"] == 0

    forgot = cli("hooks", "forget", f"{module}:app", "app", "--url", url).stdout
    assert "forgot hook group app" in forgot
    after = orjson.loads(cli("hooks", f"{module}:app", "--url", url, "--json").stdout)
    assert after == {"groups": [], "parked": []}
