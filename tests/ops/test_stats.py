"""The job counters in the store: totals and per-minute buckets named by the store's
clock, added up across workers (two writers on one store)."""

from __future__ import annotations

import re

import pytest

from workhorse import Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.job import Lease
from workhorse.observability import stats
from workhorse.observability.tally import Tally
from workhorse.testing import FakeClock


def lease(job_id: str, task: str = "ok") -> Lease:
    """A lease on queue default of a job enqueued at epoch 0."""
    return Lease(job_id, "t", task, "default", b"null", 1, 1, None, 30.0, 0.0)


def finish(tally: Tally, n: int, kind: str, task: str = "ok") -> None:
    """``n`` attempts of ``task`` claimed and ended with ``kind`` (as a worker counts)."""
    leases = [lease(f"{task}{kind}{i}", task) for i in range(n)]
    tally.claimed(leases, 1.0)
    for _ in leases:
        tally.finished("default", task, 1.0, f"job.{kind}")


async def test_minutes_and_totals_from_two_workers() -> None:
    clock = FakeClock(start=1_800_000_000.0)  # a minute boundary (divisible by 60)
    app = Workhorse(backend=MemoryBackend(clock=clock))
    await app.open()
    try:
        # A worker without a metrics port keeps no histograms: the store's figures need none.
        one, two = Tally(histograms=False), Tally()
        w1, w2 = stats.StatsWriter(app.client, one), stats.StatsWriter(app.client, two)
        finish(one, 3, "completed")
        finish(two, 2, "completed")
        finish(two, 1, "failed")
        await w1.flush()
        await w2.flush()
        clock.advance(60)
        finish(one, 4, "completed")
        finish(one, 1, "retrying")  # a retry is neither completed nor failed
        await w1.flush()
        await w1.flush()  # nothing new: nothing added twice

        minutes = await stats.per_minute(app.client, "completed", "default", "ok", minutes=3)
        start = int(clock()) // 60 * 60
        assert minutes == [(start - 120, 0), (start - 60, 5), (start, 4)]
        failed = await stats.per_minute(app.client, "failed", "default", "ok", minutes=2)
        assert failed == [(start - 60, 1), (start, 0)]
        waited = await stats.per_minute(app.client, "wait_ms", "default", "ok", minutes=2)
        assert waited == [(start - 60, 6000), (start, 5000)]  # each attempt waited 1 s
        assert await stats.totals(app.client) == [stats.Total("default", "ok", 9, 1)]
    finally:
        await app.close()


@pytest.mark.parametrize(
    ("kind", "minutes", "words"), [("done", 5, "unknown kind 'done'"), ("failed", 500, "1..120")]
)
async def test_bad_reads_name_the_problem(kind: str, minutes: int, words: str) -> None:
    app = Workhorse(url="memory://")
    try:
        with pytest.raises(ValueError, match=re.escape(words)):
            await stats.per_minute(app.client, kind, "default", "ok", minutes=minutes)
    finally:
        await app.close()
