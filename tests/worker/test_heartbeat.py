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
