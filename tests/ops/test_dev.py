"""``workhorse dev``: a change to a task file restarts the worker, and a job in flight at
that moment is handed back and still finishes, once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from workhorse import JobState, Workhorse

from .procs import workhorse

TASKS = """
import asyncio, os
from workhorse import Workhorse

app = Workhorse()
LEDGER = os.environ["LEDGER"]

@app.task
async def slow(data: dict) -> str:
    with open(LEDGER, "a") as f:
        f.write(f"start {os.getpid()}\\n")
    await asyncio.sleep(data["seconds"])
    with open(LEDGER, "a") as f:
        f.write(f"done {os.getpid()}\\n")
    return "finished"
"""


async def lines(ledger: Path, word: str, n: int, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        text = await asyncio.to_thread(ledger.read_text)
        found = [ln for ln in text.splitlines() if ln.startswith(word)]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_file_change_restarts_the_worker_and_the_job_in_flight_finishes_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "devtasks.py").write_text(TASKS)
    ledger = tmp_path / "ledger"
    ledger.touch()
    url = f"sqlite:///{tmp_path / 'store.db'}"
    log = tmp_path / "dev.log"
    env = {"PYTHONPATH": str(tmp_path), "LEDGER": str(ledger)}
    producer = Workhorse(url=url)

    @producer.task
    async def slow(data: dict[str, float]) -> str: ...  # the producer's side: the name

    with workhorse(
        "dev", "devtasks:app", "--url", url, "--watch", str(tmp_path), log=log, env=env
    ) as proc:
        try:
            handle = await producer.enqueue("slow", {"seconds": 2.0})
            started = await lines(ledger, "start", 1)
            assert len(started) == 1, log.read_text()
            # Edit the task file while the job runs: the worker restarts.
            (tmp_path / "devtasks.py").write_text(TASKS + "\n# edited\n")
            job = await producer.wait(handle.id, 30)
            assert job.state is JobState.COMPLETED
            assert job.result == "finished"
            starts = await lines(ledger, "start", 2)
            done = await lines(ledger, "done", 1)
            assert len(done) == 1  # finished once
            assert len(starts) == 2  # handed back at the restart and run again
            assert starts[0].split()[1] != starts[1].split()[1]  # by the new worker process
            assert "changed: restarting the worker" in log.read_text()
        finally:
            await producer.close()
    assert proc.returncode == 0  # SIGTERM: the worker stopped, then workhorse dev


@pytest.mark.parametrize(
    ("environment", "starts"), [("development", True), ("production", False), (None, False)]
)
async def test_embedded_worker_dev_starts_only_in_development(
    environment: str | None, starts: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKHORSE_ENVIRONMENT", raising=False)
    if environment is not None:
        monkeypatch.setenv("WORKHORSE_ENVIRONMENT", environment)
    app = Workhorse(url="memory://", embedded_worker="dev")
    try:
        worker = await app.start_worker()
        assert (worker is not None) == starts
    finally:
        await app.close()
