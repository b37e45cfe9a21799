"""A worker's record says what it is doing now, not what it did a heartbeat ago."""

from __future__ import annotations

import asyncio

from tests.worker.worker_helpers import running, wait_until
from workhorse import Workhorse


async def test_a_worker_says_it_is_busy_or_idle_before_its_next_heartbeat(
    app: Workhorse,
) -> None:
    @app.task
    async def nap() -> None:
        await asyncio.sleep(3)

    async def active_is(n: int) -> bool:
        workers = await app.workers()
        return bool(workers) and workers[0].active == n

    async with running(app, heartbeat_interval=30):  # no regular beat during the test
        await wait_until(lambda: active_is(0), what="the first heartbeat")
        handle = await nap.enqueue()
        await wait_until(lambda: active_is(1), timeout=2.5, what="active 1")
        await handle.result(timeout=10)
        await wait_until(lambda: active_is(0), timeout=3, what="active 0")
        assert (await app.workers())[0].processed == 1


async def test_a_short_heartbeat_keeps_the_worker_listed_while_it_changes() -> None:
    """A change of state (a pause, jobs starting) makes the next beat come soon but never
    later than the interval: with a 0.2 s interval (a 0.6 s ttl) the worker stays listed.
    The store's real clock, as beats expire by it."""
    async with Workhorse("memory://") as app, running(app, heartbeat_interval=0.2) as worker:
        await wait_until(lambda: _listed(app), what="the first heartbeat")
        worker.pause()
        deadline = asyncio.get_running_loop().time() + 1.5
        while asyncio.get_running_loop().time() < deadline:
            assert await _listed(app), "the paused worker dropped out of the live workers"
            await asyncio.sleep(0.05)
        assert (await app.workers())[0].paused


async def _listed(app: Workhorse) -> bool:
    return bool(await app.workers())
