"""Scheduled jobs start at their time on every backend, with an idle worker at the default
poll interval (issue 16: within 10 ms at p99; bench/delay.py measures that figure)."""

from __future__ import annotations

import statistics
import time

from workhorse import Workhorse

from .test_client import running, task

AHEAD = 0.12  # seconds each job is scheduled ahead
# A bound a loaded test machine keeps; a Redis blocking pop's own timeout (ended on the
# server's 100 ms clock tick) would miss it in most runs.
LATE = 0.03


async def test_an_idle_worker_starts_scheduled_jobs_at_their_time(app: Workhorse) -> None:
    late: list[float] = []

    @task(app, queue="q")
    async def stamp(at: float) -> None:
        late.append(time.time() - at)

    async with running(app, ["q"], poll_interval=1.0):
        for _ in range(10):
            at = time.time() + AHEAD
            handle = await app.enqueue(stamp, at, at=at)
            await app.wait(handle.id, 10)
    assert len(late) == 10
    assert min(late) >= -0.005  # not early (the store's clock is this machine's)
    assert statistics.median(late) < LATE, sorted(late)
