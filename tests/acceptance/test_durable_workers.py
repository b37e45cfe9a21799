"""Real worker processes on each durable backend (sqlite, redis, postgres): four of them
share 10,000 jobs, and a worker SIGKILLed in the middle of a job has that job run again
within the stated recovery bound. Delivery is judged from a ledger the task itself writes
(see ledger_worker.py), never from the store's own account."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import backend_url
from workhorse import JobState, Workhorse
from workhorse.backends import backend_from_url

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("ledger_worker.py")
LEASE, RECLAIM, POLL = 1.0, 0.5, 0.2
BOUND = LEASE + RECLAIM + POLL  # the stated recovery bound for a killed worker's job
SLACK = 1.0  # process scheduling on a loaded 2-core machine
FAST = {"lease": LEASE, "reclaim_interval": RECLAIM, "poll_interval": POLL,
        "heartbeat_interval": 1.0}  # fmt: skip
JOBS, PROCESSES = 10_000, 4


class Ledger:
    """``EVENT JOB_ID PID EPOCH`` lines, one O_APPEND write each (see ledger_worker.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self, event: str, job_id: str | None = None) -> list[tuple[str, int, float]]:
        out = []
        for raw in self.path.read_bytes().splitlines():
            ev, jid, pid, at = raw.decode().split()
            if ev == event and (job_id is None or jid == job_id):
                out.append((jid, int(pid), float(at)))
        return out

    async def wait(
        self, event: str, n: int = 1, job_id: str | None = None, timeout: float = 15.0,
        every: float = 0.02,
    ) -> list[tuple[str, int, float]]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            found = self.lines(event, job_id)
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"ledger: {len(found)} of {n} {event!r} lines after {timeout}s")
            await asyncio.sleep(every)


class Workers:
    """Worker processes of one test; whatever still runs at the end is killed."""

    def __init__(self, url: str, ledger: Ledger, folder: Path) -> None:
        self.url, self.ledger, self.folder = url, ledger, folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, **options: Any) -> subprocess.Popen[bytes]:
        log = self.folder / f"worker{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), self.url, str(self.ledger.path),
                 orjson.dumps(options).decode()],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        log = self.folder / f"worker{self.procs.index(proc)}.log"
        return log.read_text(errors="replace")[-4000:]

    async def ready(self, *procs: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 30
        for proc in procs:
            while not any(pid == proc.pid for _, pid, _ in self.ledger.lines("ready")):
                if proc.poll() is not None:
                    pytest.fail(f"worker exited with {proc.returncode}:\n{self.output(proc)}")
                if time.monotonic() > deadline:
                    pytest.fail(f"worker not ready after 30s:\n{self.output(proc)}")
                await asyncio.sleep(0.02)

    async def stop(self, *procs: subprocess.Popen[bytes]) -> None:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"worker {proc.pid} ignored SIGTERM:\n{self.output(proc)}")
                await asyncio.sleep(0.02)
            assert proc.returncode == 0, self.output(proc)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    pytest.importorskip(f"workhorse.backends.{request.param}")
    u = backend_url(str(request.param), tmp_path)  # its own file, key prefix or schema
    yield u
    asyncio.run(_drop(u))


async def _drop(url: str) -> None:
    backend = backend_from_url(url)
    await backend.open()
    try:
        drop = getattr(backend, "drop", None)
        if drop is not None:
            await drop()
    finally:
        await backend.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def workers(url: str, ledger: Ledger, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(url, ledger, tmp_path)
    try:
        yield w
    finally:
        w.kill_all()


@pytest.fixture
async def producer(url: str) -> AsyncIterator[Workhorse]:
    app = Workhorse(url)

    @app.task(name="mark")
    async def mark(data: dict[str, Any]) -> str:  # runs only in the worker processes
        raise AssertionError("the producer never runs jobs")

    await app.open()
    yield app
    await app.close()


async def test_four_workers_share_10000_jobs_each_done_exactly_once(
    url: str, workers: Workers, ledger: Ledger, producer: Workhorse
) -> None:
    procs = [workers.spawn(concurrency=25, **FAST) for _ in range(PROCESSES)]
    await workers.ready(*procs)
    t0 = time.monotonic()
    handles = await producer.enqueue_many("mark", [{}] * JOBS)
    enqueued = time.monotonic() - t0
    ids = {h.id for h in handles}
    assert len(ids) == JOBS
    done = await ledger.wait("done", n=JOBS, timeout=45, every=0.25)
    elapsed = time.monotonic() - t0
    await workers.stop(*procs)

    starts = Counter(jid for jid, _, _ in ledger.lines("start"))
    dones = Counter(jid for jid, _, _ in ledger.lines("done"))
    assert set(dones) == ids
    assert max(dones.values()) == 1  # completed exactly once
    assert max(starts.values()) == 1  # and never even claimed twice
    by_pid = Counter(pid for _, pid, _ in done)
    print(
        f"\n{url.split(':')[0]}: {JOBS} jobs, {PROCESSES} processes: enqueued in "
        f"{enqueued:.2f}s, all done {elapsed:.2f}s after the enqueue began "
        f"({JOBS / elapsed:,.0f} jobs/s); per worker: {sorted(by_pid.values())}"
    )
    assert set(by_pid) == {p.pid for p in procs}  # every worker took a share
    counts = (await producer.counts(["default"]))["default"]
    assert counts[JobState.COMPLETED] == JOBS


async def test_sigkill_mid_job_is_recovered_within_the_bound(
    url: str, workers: Workers, ledger: Ledger, producer: Workhorse
) -> None:
    first = workers.spawn(concurrency=1, **FAST)
    await workers.ready(first)
    handle = await producer.enqueue("mark", {"sleep": 2}, retries=2)
    ((_, pid, _),) = await ledger.wait("start", job_id=handle.id)
    assert pid == first.pid
    second = workers.spawn(concurrency=1, **FAST)
    await workers.ready(second)
    await asyncio.sleep(LEASE * 1.5)  # the first worker renews: the job stays with it
    assert len(ledger.lines("start", handle.id)) == 1

    killed_at = time.time()
    first.kill()
    first.wait(5)
    starts = await ledger.wait("start", n=2, job_id=handle.id, timeout=BOUND + SLACK + 5)
    recovery = starts[1][2] - killed_at
    print(f"\n{url.split(':')[0]}: recovered in {recovery:.2f}s (bound {BOUND:.1f}s)")
    assert starts[1][1] == second.pid
    assert 0 < recovery <= BOUND + SLACK

    ((_, done_pid, _),) = await ledger.wait("done", job_id=handle.id, timeout=10)
    assert done_pid == second.pid  # the killed worker never finished it
    job = await producer.wait(handle.id, timeout=5)
    assert (job.state, job.attempts) == (JobState.COMPLETED, 2)
    assert len(ledger.lines("done", handle.id)) == 1
    await workers.stop(second)
