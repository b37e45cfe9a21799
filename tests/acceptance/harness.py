"""Real worker processes (ledger_worker.py) and the ledger their tasks write. Delivery is
judged from the ledger, never from the store's own account."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

SCRIPT = Path(__file__).with_name("ledger_worker.py")


@dataclass(frozen=True)
class Line:
    event: str
    job_id: str
    pid: int
    at: float


class Ledger:
    """``EVENT JOB_ID PID EPOCH`` lines, one O_APPEND write each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self) -> list[Line]:
        out = []
        text = self.path.read_text()
        # A worker may be mid-write: only whole lines (ending in a newline) count yet.
        for raw in text[: text.rfind("\n") + 1].splitlines():
            event, job_id, pid, at = raw.split()
            out.append(Line(event, job_id, int(pid), float(at)))
        return out

    def of(self, event: str, job_id: str | None = None) -> list[Line]:
        return [
            ln
            for ln in self.lines()
            if ln.event == event and (job_id is None or ln.job_id == job_id)
        ]

    async def wait(
        self, event: str, n: int = 1, job_id: str | None = None, timeout: float = 15.0,
        every: float = 0.02,
    ) -> list[Line]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(event, job_id)
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                pytest.fail(
                    f"ledger: {len(found)} of {n} {event!r} lines after {timeout}s; "
                    f"ledger holds:\n{self.path.read_text()[-2000:]}"
                )
            await asyncio.sleep(every)


class Workers:
    """Worker processes started for one test; any left running are killed at the end."""

    def __init__(self, url: str, ledger: Ledger, folder: Path) -> None:
        self.url, self.ledger, self.folder = url, ledger, folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, **options: Any) -> subprocess.Popen[bytes]:
        """Start one worker without waiting for it (start several, then ``ready``)."""
        with (self.folder / f"worker{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), self.url, str(self.ledger.path),
                 orjson.dumps(options).decode()],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    async def ready(self, *procs: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for proc in procs:
            while not any(ln.pid == proc.pid for ln in self.ledger.of("ready")):
                if proc.poll() is not None:
                    pytest.fail(f"worker exited with {proc.returncode}:\n{self.output(proc)}")
                if time.monotonic() > deadline:
                    pytest.fail(f"worker not ready after {timeout}s:\n{self.output(proc)}")
                await asyncio.sleep(0.02)

    async def start(self, **options: Any) -> subprocess.Popen[bytes]:
        proc = self.spawn(**options)
        await self.ready(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        log = self.folder / f"worker{self.procs.index(proc)}.log"
        return log.read_text(errors="replace")[-4000:]

    async def exit_code(self, proc: subprocess.Popen[bytes], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"worker {proc.pid} still running after {timeout}s:\n{self.output(proc)}"
                )
            await asyncio.sleep(0.02)
        return proc.returncode

    async def stop(self, *procs: subprocess.Popen[bytes]) -> None:
        """SIGTERM, and each must exit 0 within 10 s."""
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert await self.exit_code(proc, 10) == 0, self.output(proc)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


async def drop_store(url: str) -> None:
    """Remove what a test wrote under its own file, key prefix or schema."""
    from workhorse.backends import backend_from_url

    backend = backend_from_url(url)
    await backend.open()
    try:
        drop = getattr(backend, "drop", None)
        if drop is not None:
            await drop()
    finally:
        await backend.close()
