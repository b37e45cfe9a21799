"""``workhorse dev``: a change to a task file restarts the worker, and a job in flight at
that moment is handed back and still finishes, once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from workhorse import JobState, Workhorse

from .procs import free_port, workhorse

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
        "dev", "devtasks:app", "--url", url, "--watch", str(tmp_path), "--no-api", log=log, env=env
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


HOOKED = """
import os
from workhorse import Workhorse

app = Workhorse()

@app.on("test.order", name="record")
async def record(event) -> None:
    with open(os.environ["LEDGER"], "a") as f:
        f.write(f"{event.job_id} {os.getpid()}\\n")
"""


@pytest.mark.slow
async def test_dev_runs_the_hooks_listener_and_the_api_and_restarts_them(tmp_path: Path) -> None:
    import httpx

    from workhorse.job import Event

    (tmp_path / "devhooks.py").write_text(HOOKED)
    ledger = tmp_path / "ledger"
    ledger.touch()
    url = f"sqlite:///{tmp_path / 'store.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer dev-token-123"}
    env = {"PYTHONPATH": str(tmp_path), "LEDGER": str(ledger)}
    env["WORKHORSE_API_TOKENS"] = "write:dev-token-123"
    producer = Workhorse(url=url)

    async def listeners() -> int:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    r = await http.get(f"{base}/api/hooks", headers=auth)
                    groups = r.json()["groups"] if r.status_code == 200 else []
                    if groups and groups[0]["listeners"] == 1:
                        return 1
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        return 0

    log = tmp_path / "dev.log"
    args = ["dev", "devhooks:app", "--url", url, "--watch", str(tmp_path), "--port", str(port)]
    with workhorse(*args, log=log, env=env) as proc:
        try:
            assert await listeners() == 1, log.read_text()  # the API answers, a listener runs
            await producer.open()
            await producer.backend.publish([Event("test.order", "first")])
            [first] = await lines(ledger, "first", 1)
            (tmp_path / "devhooks.py").write_text(HOOKED + "\n# edited\n")
            await asyncio.sleep(1.0)  # the old children stop
            assert await listeners() == 1, log.read_text()  # the API and listener are back
            await producer.backend.publish([Event("test.order", "second")])
            [second] = await lines(ledger, "second", 1)
            assert first.split()[1] != second.split()[1]  # a new listener process
        finally:
            await producer.close()
    assert proc.returncode == 0


def test_dev_serves_the_api_on_loopback_only_or_runs_the_listener_alone() -> None:
    from workhorse.cli.dev import commands

    worker, api = commands("m:app", "sqlite:///x.db", None, 0.0, 8123)
    assert worker[3:5] == ["worker", "m:app"]
    assert api[3:] == [
        "serve", "m:app", "--host", "127.0.0.1", "--port", "8123", "--listen", "--url", "sqlite:///x.db"
    ]  # fmt: skip
    _, listener = commands("m:app", None, "default", 0.0, None)  # --no-api
    assert listener[3:] == ["listen", "m:app"]
