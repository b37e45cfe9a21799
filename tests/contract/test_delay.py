"""Scheduled jobs start at their time, not at the worker's next poll, on every backend
(issue 16; bench/delay.py measures how close, which a test on a shared machine cannot)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

from tests.chaos.servers import PrivateRedis
from tests.conftest import private_redis
from workhorse import Workhorse

from .test_client import running, task

AHEAD = 0.12  # seconds each job is scheduled ahead
POLL = 5.0  # the worker's poll: a job waiting for it would start seconds late
# Far above what a loaded machine adds, far below a poll or a one-second server tick.
LATE = 0.4


async def lateness(app: Workhorse, jobs: int = 8) -> list[float]:
    late: list[float] = []

    @task(app, queue="q")
    async def stamp(at: float) -> None:
        late.append(time.time() - at)

    async with running(app, ["q"], poll_interval=POLL):
        for _ in range(jobs):
            at = time.time() + AHEAD
            handle = await app.enqueue(stamp, at, at=at)
            await app.wait(handle.id, 10)
    assert len(late) == jobs
    assert min(late) >= -0.005  # not early (the store's clock is this machine's)
    return late


async def test_an_idle_worker_starts_scheduled_jobs_at_their_time(
    backend_kind: str, app: Workhorse
) -> None:
    late = await lateness(app)
    assert statistics.median(late) < LATE, sorted(late)


@pytest.fixture
def slow_ticking_redis() -> Iterator[PrivateRedis]:
    """A Redis that ends blocking pops on a one-second clock tick (``hz 1``)."""
    yield from private_redis(["--hz", "1"])


@pytest.mark.slow
async def test_a_redis_worker_does_not_wait_for_the_servers_clock_tick(
    slow_ticking_redis: PrivateRedis,
) -> None:
    """A blocking pop's timeout ends on the server's tick (100 ms at the default hz 10), so
    the waiting worker wakes itself when the next job is due."""
    app = Workhorse(slow_ticking_redis.url)
    async with app:
        late = await lateness(app, jobs=5)
    assert statistics.median(late) < LATE, sorted(late)
