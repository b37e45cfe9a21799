"""What only the memory backend promises beside the contract (tests/contract): the memory
a job it keeps costs, events kept out of the cyclic GC's walks, and a per-job event index
that trims with the log however the jobs' events interleave; an idle worker's waits that
keep nothing."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc

from workhorse import codec
from workhorse.backends import JOB_EVENTS
from workhorse.backends.memory import MemoryBackend
from workhorse.job import Event, NewJob, Outcome, new_job_id

JOBS = 5_000
# What a finished no-op job the store keeps costs in traced bytes: its record, its three
# events and their index by job (about 1,560 on CPython 3.11; 1,530 before that index); a
# deque per job in the index (760 bytes empty) made it 2,310.
BYTES_PER_JOB = 1_900


def job(queue: str = "q") -> NewJob:
    return NewJob(new_job_id(), "t", queue, codec.dumps(None))


async def _run_all(backend: MemoryBackend, n: int) -> None:
    """Enqueue ``n`` jobs, claim and complete them all, as a worker would."""
    for start in range(0, n, 500):
        await backend.enqueue([job() for _ in range(min(500, n - start))])
    while leases := await backend.claim(["q"], "w1", 500, 30.0):
        await backend.finish([(lease, Outcome("completed", result=b"null")) for lease in leases])


async def test_a_finished_job_it_keeps_costs_a_bounded_number_of_bytes() -> None:
    backend = MemoryBackend()
    await _run_all(backend, 100)  # the containers' first growth is not per job
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await _run_all(backend, JOBS)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert (await backend.counts(["q"]))["q"]["completed"] == JOBS + 100  # nothing purged
    assert kept / JOBS < BYTES_PER_JOB, f"{kept / JOBS:.0f} bytes per kept job"


async def test_its_events_leave_the_cyclic_gc_nothing_to_walk() -> None:
    """A finished job keeps its record; its events, and a run's published ones, add no
    object the cyclic GC tracks (each full collection walks every tracked object)."""
    backend = MemoryBackend()
    await _run_all(backend, 100)  # the containers' first growth is not per job
    gc.collect()
    before = len(gc.get_objects())
    await _run_all(backend, 1_000)
    for i in range(1_000):
        data = {"run": f"r{i % 10}", "flow": "f", "step": "s", "attempt": 1}
        await backend.publish([Event("step.started", f"j{i}", "s", "q", data)])
    gc.collect()
    assert len(gc.get_objects()) - before < 1_100  # a record per job, not three events more
    assert [e.type for e in await backend.run_events("r3", 0, 3)] == ["step.started"] * 3


async def test_a_runs_events_read_by_id_as_the_log_trims() -> None:
    """A run's index holds its events' ids, read at their place in the log: right after
    trims that moved every place, among other runs' and jobs' events."""
    backend = MemoryBackend(max_events=100)
    for i in range(1_500):
        data = {"run": f"r{i % 3}", "flow": "f", "step": "s", "attempt": i}
        await backend.publish([Event("step.started", f"j{i}", "s", "q", data)])
        if i % 7 == 0:
            await backend.enqueue([job()])
    log = await backend.events(0, 10_000)
    assert 100 <= len(log) <= 1_100
    for run in ("r0", "r1", "r2"):
        mine = [e for e in log if e.data.get("run") == run]
        assert await backend.run_events(run, 0, 10_000) == mine
        assert await backend.run_events(run, mine[5].id, 3) == mine[6:9]


async def test_interleaved_jobs_events_trim_with_the_log() -> None:
    backend = MemoryBackend(max_events=100)
    for _ in range(5):
        await backend.enqueue([job()])
    leases = await backend.claim(["q"], "w1", 5, 30.0)
    for i in range(300):  # 1,500 progress events, the five jobs' in turn, many trims
        for lease in leases:
            assert await backend.update(lease, progress=i)
    await backend.finish([(leases[0], Outcome("completed"))])

    log = await backend.events(0, 10_000)
    assert 100 <= len(log) <= 1_100
    for lease in leases:
        in_log = [e for e in log if e.job_id == lease.job_id]
        got = await backend.job_events(lease.job_id)
        assert got == in_log[-JOB_EVENTS:]
        assert await backend.job_events(lease.job_id, 3) == in_log[-3:]
    assert [e.type for e in await backend.job_events(leases[0].job_id, 2)] == [
        "job.progress",
        "job.completed",
    ]
    more = [job() for _ in range(1_200)]  # every event of the five jobs leaves the log
    await backend.enqueue(more)
    for lease in leases:
        assert await backend.job_events(lease.job_id) == []
    assert [e.type for e in await backend.job_events(more[-1].id)] == ["job.queued"]


async def test_waits_that_time_out_or_are_cancelled_keep_nothing() -> None:
    """An idle worker waits for jobs, and a caller for results, again and again: a wait
    that ends without a wake-up leaves nothing behind in the store."""
    backend = MemoryBackend()
    await backend.wait_for_jobs(["q"], 0.001)  # the first wait's allocations are not per wait
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            await backend.wait_for_jobs(["q"], 0.0001)
            assert await backend.wait_claim("q", "w1", 10, 30.0, 0.0001) == []
            assert await backend.wait_finished(["nope"], 0.0001) == []
            waiting = asyncio.ensure_future(backend.wait_for_jobs(["q"], 10.0))
            await asyncio.sleep(0)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 20_000, f"{kept} bytes kept after 2,000 waits"
    await backend.enqueue([job()])
    assert len(await backend.wait_claim("q", "w1", 10, 30.0, 10.0) or []) == 1  # one step


async def test_a_run_whose_events_all_left_the_log_leaves_no_index() -> None:
    """The log's trim drops each run's index entries with its events: a run whose every
    event is gone holds no deque (760 B each, one per run ever logged otherwise)."""
    backend = MemoryBackend(max_events=100)
    for i in range(1_500):
        data = {"run": f"r{i // 10}", "flow": "f", "step": "s", "attempt": 1}
        await backend.publish([Event("step.started", f"j{i}", "s", "q", data)])
    first = (await backend.events(0, 1))[0]  # ids from 1: event i is run i // 10's
    assert set(backend._run_events) == {f"r{i}" for i in range((first.id - 1) // 10, 150)}
