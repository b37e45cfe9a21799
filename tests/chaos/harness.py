"""Worker processes, stores and reports for the chaos scenarios."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.chaos.ledger import Reader, Writer
from tests.chaos.tasks import build
from workhorse import Workhorse
from workhorse.backends import backend_from_url

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("sqlite", "redis", "postgres")
REDIS_URL = os.environ.get("WORKHORSE_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "WORKHORSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


_GONE = (ProcessLookupError, OSError, subprocess.TimeoutExpired)


class Unavailable(RuntimeError):
    """A server the scenario needs is not there (a failure under CI=true)."""


def _reachable(url: str, default_port: int) -> bool:
    host_port = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or default_port)), 1):
            return True
    except OSError:
        return False


def _stopped(pid: int) -> None:
    """Wait until the kernel shows ``pid`` stopped (a signal lands asynchronously)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] in ("T", "t"):
            return
        time.sleep(0.001)
    raise RuntimeError(f"worker {pid} did not stop within 5 s of SIGSTOP")


def _writable(url: str) -> bool:
    """Whether a write transaction on the SQLite file at ``url`` starts at once."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///").split("?")[0], timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def store_url(kind: str, workdir: Path, base: str | None = None) -> str:
    """A store private to one run: its own file, key prefix or schema. ``base`` points
    redis/postgres at a private server instead of the shared one."""
    tag = uuid.uuid4().hex[:10]
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'chaos.db'}"
    if kind == "redis":
        base = base or REDIS_URL
        if not _reachable(base, 6379):
            raise Unavailable(f"redis is not reachable at {base}")
        return f"{base}?prefix=chaos{tag}"
    if kind == "postgres":
        base = base or POSTGRES_URL
        if not _reachable(base, 5432):
            raise Unavailable(f"postgres is not reachable at {base}")
        return f"{base}?schema=chaos{tag}"
    raise ValueError(f"unknown backend {kind!r}; use one of {', '.join(BACKENDS)}")


async def drop_store(url: str) -> None:
    backend = backend_from_url(url)
    try:
        await backend.open()
        drop = getattr(backend, "drop", None)
        if drop is not None:
            await drop()
    except Exception:
        pass  # the server may be gone already (a private one); nothing to clean
    finally:
        await backend.close()


@dataclass
class Settings:
    """The fast settings the scenarios run with (recovery bound = lease + reclaim + poll)."""

    lease: float = 1.0
    reclaim_interval: float = 0.5
    poll_interval: float = 0.2
    concurrency: int = 10
    shutdown_grace: float = 2.0
    heartbeat_interval: float = 1.0

    @property
    def bound(self) -> float:
        return self.lease + self.reclaim_interval + self.poll_interval

    def options(self) -> dict[str, Any]:
        return {
            "queues": ["default"],
            "lease": self.lease,
            "reclaim_interval": self.reclaim_interval,
            "poll_interval": self.poll_interval,
            "concurrency": self.concurrency,
            "shutdown_grace": self.shutdown_grace,
            "heartbeat_interval": self.heartbeat_interval,
        }


class Cluster:
    """Worker processes on one store, all writing to one ledger."""

    def __init__(self, url: str, workdir: Path, settings: Settings) -> None:
        self.url = url
        self.workdir = workdir
        self.settings = settings
        self.ledger_path = workdir / "ledger.db"
        self.writer = Writer(self.ledger_path)  # the harness's own rows: faults
        self.reader = Reader(self.ledger_path)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def spawn(self, url: str | None = None, **overrides: Any) -> subprocess.Popen[bytes]:
        options = {**self.settings.options(), **overrides}
        log_path = self.workdir / f"worker{len(self.procs)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.worker", url or self.url,
                 str(self.ledger_path), orjson.dumps(options).decode()],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        self.procs.append(proc)
        self.logs[proc.pid] = log_path
        return proc

    async def ready(self, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        want = {p.pid for p in procs}
        while True:
            have = {r.pid for r in self.reader.rows("ready")}
            if want <= have:
                return
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"worker {p.pid} exited: {self.output(p.pid)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(want - have)} not ready after {timeout}s")
            await asyncio.sleep(0.05)

    async def start(
        self, n: int, url: str | None = None, **overrides: Any
    ) -> list[subprocess.Popen[bytes]]:
        procs = [self.spawn(url, **overrides) for _ in range(n)]
        await self.ready(procs)
        return procs

    def signal(self, proc: subprocess.Popen[bytes], sig: signal.Signals, event: str) -> float:
        """Send ``sig`` and record it. The row's time is taken once the signal has landed:
        a SIGKILLed worker is reaped first, since it may still write a row or two between
        the decision and its death (a row written before the signal made a job that
        started in those milliseconds look like an unexplained rerun)."""
        os.kill(proc.pid, sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        return self.writer.fault(event, proc.pid)

    def freeze(self, proc: subprocess.Popen[bytes]) -> float:
        """SIGSTOP ``proc`` at a moment it holds no SQLite write lock. A process frozen
        inside a write transaction blocks every writer of the file until it is continued
        (docs/guarantees.md); the scenarios are about a frozen worker's leases, not that,
        so a stop that lands inside one is undone and tried again."""
        for _ in range(200):
            os.kill(proc.pid, signal.SIGSTOP)
            _stopped(proc.pid)
            if not self.url.startswith("sqlite") or _writable(self.url):
                return self.writer.fault("stop", proc.pid)
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.005 + random.random() * 0.02)
        raise RuntimeError(f"worker {proc.pid} held the SQLite write lock at 200 stops")

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def output(self, pid: int) -> str:
        path = self.logs.get(pid)
        return path.read_text(errors="replace")[-3000:] if path else ""

    def log_count(self, pid: int, needle: str) -> int:
        path = self.logs.get(pid)
        return path.read_text(errors="replace").count(needle) if path else 0

    async def stop_all(self, timeout: float = 15) -> None:
        """SIGTERM every live worker (SIGCONT first, in case one is stopped); SIGKILL
        what has not exited in time."""
        for p in self.live():
            with contextlib.suppress(*_GONE):
                os.kill(p.pid, signal.SIGCONT)
                p.terminate()
        deadline = time.monotonic() + timeout
        while self.live() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for p in self.live():
            p.kill()
        for p in self.procs:
            with contextlib.suppress(*_GONE):
                p.wait(5)

    def close(self) -> None:
        for p in self.live():
            p.kill()
            with contextlib.suppress(*_GONE):
                p.wait(5)
        self.writer.close()
        self.reader.close()


def producer(url: str) -> Workhorse:
    return build(url, None)


async def wait_for(cond: Any, timeout: float, what: str, step: float = 0.05) -> float:
    """Poll ``cond()`` until true; returns the seconds it took, raises after ``timeout``."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not reached after {timeout}s")
        await asyncio.sleep(step)
    return time.monotonic() - start


async def results(url: str, ids: list[str]) -> dict[str, Any]:
    """The store's record of each job (state, attempts, result): read once at the end."""
    app = producer(url)
    await app.open()
    try:
        return {job_id: await app.get_job(job_id) for job_id in ids}
    finally:
        await app.close()


async def all_finished(cluster: Cluster, ids: list[str], timeout: float) -> None:
    """Wait until the ledger holds a finish row for ``len(ids)`` distinct jobs."""
    want = len(ids)
    await wait_for(lambda: cluster.reader.count("finish") >= want, timeout, "every job finished")


async def poll(
    get: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], timeout: float, what: str
) -> Any:
    """Await ``get()`` until ``ok`` holds for its value; raises after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await get()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout}s")
        await asyncio.sleep(0.1)


@dataclass
class Report:
    scenario: str
    backend: str
    seed: int
    duration: float
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)

    def line(self) -> str:
        figs = ", ".join(f"{k}={_fmt(v)}" for k, v in self.figures.items())
        status = "FAIL: " + "; ".join(self.failures) if self.failures else "ok"
        return f"[{self.scenario} {self.backend} seed={self.seed}] {figs} -> {status}"


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)
