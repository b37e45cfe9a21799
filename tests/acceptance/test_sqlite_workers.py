"""Real worker processes on one SQLite file: killed with SIGKILL, stopped with SIGTERM, and
two of them sharing a batch. Delivery is judged from a ledger the task itself writes
(see ledger_worker.py), never from the store's own account."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import Ledger, Workers
from workhorse import JobState, Workhorse

pytest.importorskip("workhorse.backends.sqlite")

pytestmark = pytest.mark.slow

LEASE, RECLAIM, POLL = 1.0, 0.5, 0.2
BOUND = LEASE + RECLAIM + POLL  # the stated recovery bound for a killed worker's job
SLACK = 1.0  # process scheduling on a loaded 2-core machine


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
async def producer(url: str) -> AsyncIterator[Workhorse]:
    app = Workhorse(url)

    @app.task(name="mark")
    async def mark(data: dict[str, Any]) -> str:  # runs only in the worker processes
        raise AssertionError("the producer never runs jobs")

    @app.task(name="block")
    def block(data: dict[str, Any]) -> str:
        raise AssertionError("the producer never runs jobs")

    @app.task(name="crash")
    async def crash(data: dict[str, Any]) -> None:
        raise AssertionError("the producer never runs jobs")

    await app.open()
    yield app
    await app.close()


FAST = {
    "lease": LEASE,
    "reclaim_interval": RECLAIM,
    "poll_interval": POLL,
    "heartbeat_interval": 1.0,
}


async def test_sigkill_mid_job_is_recovered_within_the_bound(
    workers: Workers,
    ledger: Ledger,
    producer: Workhorse,
) -> None:
    first = await workers.start(concurrency=1, **FAST)
    handle = await producer.enqueue("mark", {"sleep": 3})
    (started,) = await ledger.wait("start", job_id=handle.id)
    assert started.pid == first.pid
    second = await workers.start(concurrency=1, **FAST)
    await asyncio.sleep(LEASE * 1.5)  # the first worker renews: the job stays with it
    assert len(ledger.of("start", handle.id)) == 1

    killed_at = time.time()
    first.kill()
    first.wait(5)
    restarts = await ledger.wait("start", n=2, job_id=handle.id, timeout=BOUND + SLACK + 5)
    recovery = restarts[1].at - killed_at
    print(f"recovered in {recovery:.2f}s (bound {BOUND:.1f}s)")
    assert restarts[1].pid == second.pid
    assert 0 < recovery <= BOUND + SLACK

    (done,) = await ledger.wait("done", job_id=handle.id, timeout=10)
    assert done.pid == second.pid  # the killed worker never finished it
    await asyncio.sleep(0.5)
    assert len(ledger.of("done", handle.id)) == 1
    second.send_signal(signal.SIGTERM)
    assert await workers.exit_code(second, 10) == 0


async def test_sigterm_lets_running_jobs_finish_and_exits_zero(
    workers: Workers,
    ledger: Ledger,
    producer: Workhorse,
) -> None:
    proc = await workers.start(concurrency=2, shutdown_grace=10, **FAST)
    running = await producer.enqueue_many("mark", [{"sleep": 1.5}] * 2)
    await ledger.wait("start", n=2)
    waiting = await producer.enqueue_many("mark", [{"sleep": 1.5}] * 3)
    proc.send_signal(signal.SIGTERM)
    assert await workers.exit_code(proc, 10) == 0
    assert sorted(ln.job_id for ln in ledger.of("done")) == sorted(h.id for h in running)
    assert {ln.job_id for ln in ledger.of("start")} == {h.id for h in running}
    for h in waiting:
        job = await producer.get_job(h.id)
        assert job is not None
        assert (job.state, job.attempts, job.worker) == (JobState.QUEUED, 0, None)


async def test_sigterm_past_the_grace_puts_running_jobs_back_at_once(
    workers: Workers,
    ledger: Ledger,
    producer: Workhorse,
) -> None:
    proc = await workers.start(concurrency=2, shutdown_grace=0.5, **FAST)
    handles = await producer.enqueue_many("mark", [{"sleep": 30}] * 2, retries=1)
    await ledger.wait("start", n=2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert await workers.exit_code(proc, 10) == 0
    print(f"exited {time.monotonic() - t0:.2f}s after SIGTERM (grace 0.5s)")
    assert ledger.of("done") == []
    for h in handles:
        job = await producer.get_job(h.id)
        assert job is not None
        assert job.state is JobState.QUEUED  # due now: not scheduled, not leased
        assert job.attempts == 0  # the interrupted attempt does not count
        assert job.worker is None
        assert job.lease_expires_at is None


async def test_sigterm_with_a_stuck_sync_job_still_exits(
    workers: Workers,
    ledger: Ledger,
    producer: Workhorse,
) -> None:
    # The thread running blocking code cannot be stopped; it must not hold the process.
    proc = await workers.start(concurrency=1, shutdown_grace=0.3, **FAST)
    handle = await producer.enqueue("block", {"sleep": 60})
    await ledger.wait("start", job_id=handle.id)
    proc.send_signal(signal.SIGTERM)
    assert await workers.exit_code(proc, 5) == 0
    job = await producer.get_job(handle.id)
    assert job is not None
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)


async def test_a_second_sigterm_ends_the_grace(
    workers: Workers,
    ledger: Ledger,
    producer: Workhorse,
) -> None:
    proc = await workers.start(concurrency=1, shutdown_grace=60, **FAST)
    handle = await producer.enqueue("mark", {"sleep": 30})
    await ledger.wait("start", job_id=handle.id)
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    assert proc.poll() is None  # inside the grace
    proc.send_signal(signal.SIGTERM)
    assert await workers.exit_code(proc, 5) == 0
    job = await producer.get_job(handle.id)
    assert job is not None
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)


async def test_a_job_that_kills_its_worker_every_time_stops_at_max_attempts(
    workers: Workers,
    ledger: Ledger,
    producer: Workhorse,
) -> None:
    handle = await producer.enqueue("crash", {}, max_stalls=1)  # one rerun after a death
    for attempt in (1, 2):
        proc = await workers.start(concurrency=1, **FAST)
        starts = await ledger.wait("start", n=attempt, job_id=handle.id)
        assert starts[-1].pid == proc.pid
        assert await workers.exit_code(proc, 5) == -signal.SIGKILL
    survivor = await workers.start(concurrency=1, **FAST)
    job = await producer.wait(handle.id, timeout=BOUND + SLACK + 5)
    assert job.state is JobState.FAILED
    assert (job.attempts, job.stalls) == (0, 2)
    assert job.error is not None
    assert "killed its worker 2 times" in job.error["message"]
    assert len(ledger.of("start", handle.id)) == 2  # never a third start
    survivor.send_signal(signal.SIGTERM)
    assert await workers.exit_code(survivor, 10) == 0


async def test_two_workers_share_2000_jobs_each_done_exactly_once(
    workers: Workers,
    ledger: Ledger,
    producer: Workhorse,
) -> None:
    a = await workers.start(concurrency=20, **FAST)
    b = await workers.start(concurrency=20, **FAST)
    t0 = time.monotonic()
    handles = await producer.enqueue_many("mark", [{}] * 2000)
    ids = {h.id for h in handles}
    done = await ledger.wait("done", n=2000, timeout=25)
    elapsed = time.monotonic() - t0
    for proc in (a, b):
        proc.send_signal(signal.SIGTERM)
    for proc in (a, b):
        assert await workers.exit_code(proc, 10) == 0

    starts = Counter(ln.job_id for ln in ledger.of("start"))
    dones = Counter(ln.job_id for ln in ledger.of("done"))
    assert set(dones) == ids
    assert max(dones.values()) == 1  # completed exactly once
    assert max(starts.values()) == 1  # and never even started twice
    by_pid = Counter(ln.pid for ln in done)
    print(f"2000 jobs in {elapsed:.2f}s; per worker: {dict(by_pid)}")
    assert set(by_pid) == {a.pid, b.pid}  # both took a share
    counts = (await producer.counts(["default"]))["default"]
    assert counts[JobState.COMPLETED] == 2000
