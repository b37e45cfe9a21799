"""``workhorse demo``: the tour a new user runs first must work, end to end."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from workhorse.cli import main

SECTIONS = (
    "1. Worker",
    "2. Retries",
    "3. Progress",
    "4. Failure",
    "5. Batch",
    "6. Hooks",
    "7. HTTP",
    "8. Flow",
    "9. Summary",
    "10. Shutdown",
)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WORKHORSE_")}


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("workhorse.backends.sqlite") is None,
    reason="workhorse.backends.sqlite not written yet",
)
def test_demo_runs_a_worker_process_on_its_own_sqlite_file(tmp_path: Path) -> None:
    # A shell with no venv on its PATH (as `make demo` from a fresh clone), for the demo and
    # for the commands it prints: with an activated venv the demo rightly prints `workhorse`.
    env = clean_env()
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    proc = subprocess.run(
        [sys.executable, "-m", "workhorse", "demo", "--batch", "300"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=55,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    positions = [out.index(title) for title in SECTIONS]
    assert positions == sorted(positions)
    assert "as pid" in out  # a real worker subprocess
    assert "completed after 3 attempts" in out
    assert "remote ValueError: cannot parse invoice 'INV-0042'" in out
    assert "→ the same job completed: {'invoice': 'INV-0042', 'booked': '42.00'}" in out
    assert "ran 300 jobs" in out
    assert "POST /api/quote (quote, mode=http) → 200" in out
    assert "POST /api/tasks/greet/jobs?wait=10 → 200" in out
    assert "exited with code 0" in out
    assert "demo finished" in out
    assert (tmp_path / ".workhorse" / "demo.db").exists()
    # The user's default database is left alone.
    assert not (tmp_path / ".workhorse" / "workhorse.db").exists()
    assert "stopped after" in (tmp_path / ".workhorse" / "demo-worker.log").read_text()
    # The closing commands work when pasted into that same shell.
    commands = out.split("Look around:", 1)[1].strip().splitlines()
    assert len(commands) == 4
    assert "ship completed" in out  # the flow section's tree
    for command in commands:
        ran = subprocess.run(
            ["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert ran.returncode == 0, (command, ran.stdout, ran.stderr)


def test_demo_on_memory_runs_its_worker_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WORKHORSE_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(main, ["demo", "--url", "memory://", "--batch", "100"])
    assert result.exit_code == 0, result.output
    for title in SECTIONS:
        assert title in result.stdout
    assert "runs in this process" in result.stdout
    assert "completed after 3 attempts" in result.stdout
    assert "ran 100 jobs" in result.stdout
    assert not (tmp_path / ".workhorse").exists()
