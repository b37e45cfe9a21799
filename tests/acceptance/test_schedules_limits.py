"""Schedules, singletons and limits with real worker processes (see limits_worker.py).

Everything is counted from the ledger the tasks write, never from the store:

- five workers on one SQLite file, SIGKILLed and restarted at random, fire each tick of an
  every-second schedule exactly once (scenario 5 of the chaos suite, tests/chaos/schedulers.py);
- 1,000 concurrent callers of run() on one keyed singleton get one execution and its result;
- concurrency 1 per key holds across three worker processes;
- a rate of 50/s holds across three worker processes, within 5%.

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.chaos.conftest import run
from tests.chaos.schedulers import schedulers
from workhorse import Workhorse

from ..conftest import REDIS_URL, require_service
from .limits_worker import register

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("limits_worker.py")
CHAOS = float(os.environ.get("WORKHORSE_CHAOS_SECONDS", "30"))
LEASE, RECLAIM, POLL = 2.0, 0.5, 0.2
FAST = {"lease": LEASE, "reclaim_interval": RECLAIM, "poll_interval": POLL}


@dataclass(frozen=True)
class Line:
    event: str
    job_id: str
    pid: int
    at: float
    arg: str


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self, event: str | None = None) -> list[Line]:
        out = []
        for raw in self.path.read_text().splitlines():
            parts = raw.split()
            ln = Line(parts[0], parts[1], int(parts[2]), float(parts[3]), " ".join(parts[4:]))
            if event is None or ln.event == event:
                out.append(ln)
        return out

    async def wait(self, event: str, n: int, timeout: float) -> list[Line]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.lines(event)
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"ledger: {len(found)} of {n} {event!r} lines after {timeout}s")
            await asyncio.sleep(0.05)


class Procs:
    """Worker processes of one test; any left running are killed at the end."""

    def __init__(self, url: str, ledger: Ledger, tmp_path: Path, options: dict[str, Any]) -> None:
        self.url, self.ledger, self.tmp_path = url, ledger, tmp_path
        self.options = orjson.dumps(options).decode()
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"worker{len(self.procs)}.log").open("wb")
        with log:
            proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), self.url, str(self.ledger.path), self.options],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    async def ready(self, procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ready = {ln.pid for ln in self.ledger.lines("ready")}
            if all(p.pid in ready for p in procs):
                return
            for p in procs:
                if p.poll() is not None:
                    pytest.fail(f"worker exited with {p.returncode}:\n{self.output(p)}")
            if time.monotonic() > deadline:
                pytest.fail(f"workers not ready after {timeout}s")
            await asyncio.sleep(0.05)

    async def start(self, n: int) -> list[subprocess.Popen[bytes]]:
        procs = [self.spawn() for _ in range(n)]
        await self.ready(procs)
        return procs

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        i = self.procs.index(proc)
        return (self.tmp_path / f"worker{i}.log").read_text(errors="replace")[-4000:]

    async def stop(self, timeout: float = 15) -> None:
        """SIGTERM every live worker and wait for each to exit 0."""
        live = self.live()
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in live:
            while p.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"worker {p.pid} did not stop:\n{self.output(p)}")
                await asyncio.sleep(0.05)
            assert p.returncode == 0, self.output(p)

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def procs_factory(ledger: Ledger, tmp_path: Path) -> Iterator[list[Procs]]:
    made: list[Procs] = []
    try:
        yield made
    finally:
        for p in made:
            p.kill_all()


@pytest.fixture
async def redis_app() -> AsyncIterator[Workhorse]:
    """A producer on a private Redis prefix; the workers of the test share it."""
    require_service("redis", "127.0.0.1", 6379)
    app = Workhorse(f"{REDIS_URL}?prefix=wha{uuid.uuid4().hex[:12]}")
    register(app, None)
    await app.open()
    try:
        yield app
    finally:
        drop = getattr(app.backend, "drop", None)
        if drop is not None:
            await drop()
        await app.close()


def workers(made: list[Procs], url: str, ledger: Ledger, tmp_path: Path, **options: Any) -> Procs:
    procs = Procs(url, ledger, tmp_path, {**FAST, **options})
    made.append(procs)
    return procs


# -- cron under chaos ----------------------------------------------------------------------
async def test_five_workers_killed_at_random_fire_each_tick_once(tmp_path: Path) -> None:
    # Scenario 5 of the chaos suite, on one SQLite file by default;
    # WORKHORSE_CHAOS_STORE=redis or postgres runs the same on that store.
    kind = os.environ.get("WORKHORSE_CHAOS_STORE", "sqlite")
    seed = int(os.environ.get("WORKHORSE_CHAOS_SEED", random.randrange(1 << 30)))
    report = await run(schedulers(kind, tmp_path, duration=CHAOS, seed=seed))
    assert report.figures["kills"] > 0
    assert report.figures["duplicate_ticks"] == 0
    assert report.figures["missed_ticks"] == 0


# -- singleton ---------------------------------------------------------------------------
async def test_a_thousand_duplicate_runs_share_one_execution(
    redis_app: Workhorse, ledger: Ledger, procs_factory: list[Procs], tmp_path: Path
) -> None:
    procs = workers(procs_factory, redis_app.settings.url, ledger, tmp_path, concurrency=8)
    await procs.start(3)
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(
            redis_app.run(
                "rebuild_user_feed", {"user_id": "u1", "sleep": 3, "caller": i}, timeout=45
            )
            for i in range(1000)
        )
    )
    elapsed = time.perf_counter() - t0
    await procs.stop()
    runs = ledger.lines("feed")
    print(
        f"\nsingleton: 1000 concurrent run() callers, {len(runs)} execution(s), "
        f"{len({orjson.dumps(r) for r in results})} distinct result(s), {elapsed:.2f}s "
        "(the job sleeps 3s)"
    )
    assert len(runs) == 1
    assert results == [{"job": runs[0].job_id, "user_id": "u1"}] * 1000


# -- concurrency per key -----------------------------------------------------------------
async def test_concurrency_one_per_key_across_three_processes(
    redis_app: Workhorse, ledger: Ledger, procs_factory: list[Procs], tmp_path: Path
) -> None:
    accounts, per_account, busy = ("acct-1", "acct-2", "acct-3"), 15, 0.1
    procs = workers(procs_factory, redis_app.settings.url, ledger, tmp_path, concurrency=8)
    await procs.start(3)
    t0 = time.time()
    await redis_app.enqueue_many(
        "charge",
        [{"account": a, "sleep": busy, "n": i} for i in range(per_account) for a in accounts],
    )
    total = len(accounts) * per_account
    await ledger.wait("done", total, timeout=45)
    wall = time.time() - t0
    await procs.stop()

    spans: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    starts = {ln.job_id: ln for ln in ledger.lines("start")}
    for done in ledger.lines("done"):
        start = starts[done.job_id]
        spans[done.arg].append((start.at, done.at, start.pid))
    overlaps = []
    for account, runs in spans.items():
        runs.sort()
        for (_, end, _), (begin, _, _) in itertools.pairwise(runs):
            if begin < end:
                overlaps.append((account, end - begin))
    cross_key = sum(
        1
        for a in accounts
        for b in accounts
        if a < b
        for sa, ea, _ in spans[a]
        for sb, eb, _ in spans[b]
        if sa < eb and sb < ea
    )
    pids = {pid for runs in spans.values() for _, _, pid in runs}
    busy_share = total * busy / len(accounts) / wall
    print(
        f"\nconcurrency 1 per key: {total} jobs on {len(accounts)} keys across "
        f"{len(pids)} processes in {wall:.1f}s; overlaps within a key: {len(overlaps)}; "
        f"overlapping pairs across keys: {cross_key}; each key busy {busy_share:.0%} of the time"
    )
    assert len(ledger.lines("start")) == total  # each ran once
    assert not overlaps, f"runs of one key overlapped: {overlaps}"
    assert len(pids) >= 2, "one process ran everything: the limit was not shared"
    assert cross_key > 0, "different keys never ran in parallel"
    jobs = await redis_app.jobs(task="charge", limit=1000)
    assert {(j.state.value, j.attempts) for j in jobs} == {("completed", 1)}


# -- rate ----------------------------------------------------------------------------------
async def test_a_rate_of_fifty_per_second_holds_across_three_processes(
    redis_app: Workhorse, ledger: Ledger, procs_factory: list[Procs], tmp_path: Path
) -> None:
    procs = workers(procs_factory, redis_app.settings.url, ledger, tmp_path, concurrency=16)
    await procs.start(3)
    await redis_app.enqueue_many("ping", [None] * 800)  # a backlog for more than 10s
    (first, *_) = await ledger.wait("ping", 1, timeout=20)
    window = range(math.floor(first.at) + 1, math.floor(first.at) + 11)  # 10 whole seconds
    while time.time() < window[-1] + 1.2:
        await asyncio.sleep(0.2)
    procs.kill_all()  # the rest of the backlog does not matter
    pings = ledger.lines("ping")
    per_second = Counter(math.floor(ln.at) for ln in pings)
    counts = [per_second.get(s, 0) for s in window]
    total = sum(counts)
    pids = {ln.pid for ln in pings}
    print(
        f"\nrate 50/s: {total} runs in 10s across {len(pids)} processes "
        f"({total / 500 - 1:+.1%} off 500); per second {counts}"
    )
    assert len(pids) == 3
    assert 475 <= total <= 525, counts
    assert max(counts) <= 52, counts  # a run logged just past a window's turn: slack of 2
