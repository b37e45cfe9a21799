"""A worker survives its Redis server restarting without persistence.

The test starts a private ``redis-server`` (no RDB, no AOF, a free port, a temp dir) from
the machine's binary, runs a worker in-process, restarts the server (which comes back
empty), and shows that the worker takes new jobs again by itself, and that the lost data
is reported loudly. Under CI=true a missing binary fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from tests.chaos.servers import MissingBinary, PrivateRedis
from tests.conftest import IN_CI
from workhorse import Workhorse

pytestmark = pytest.mark.slow

RECOVERY = 15.0  # generous on a loaded 2-core machine; the measured figure is printed


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    try:
        srv = PrivateRedis(persist=False)
    except MissingBinary as exc:
        if IN_CI:
            pytest.fail(f"{exc}; CI=true: a missing binary fails the run")
        pytest.skip(str(exc))
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


async def test_worker_takes_jobs_again_after_a_restart(
    server: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = Workhorse(f"redis://127.0.0.1:{server.port}/0?prefix=restart", poll_interval=0.2)
    started: dict[str, float] = {}

    @app.task(queue="default")
    async def mark(data: str) -> str:
        started[data] = time.monotonic()
        return data

    await app.open()
    worker = app.worker(queues=["default"], concurrency=2, reclaim_interval=0.2,
                        shutdown_grace=1.0)  # fmt: skip
    running = asyncio.create_task(worker.run())
    try:
        assert await app.run(mark, "before", timeout=10) == "before"

        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        restarted = time.monotonic()

        # The producer reconnects by itself too; the first call may meet the dead socket.
        handle = None
        while handle is None and time.monotonic() - restarted < RECOVERY:
            try:
                handle = await mark.enqueue("after")
            except Exception:
                await asyncio.sleep(0.1)
        assert handle is not None, "could not enqueue after the restart"
        assert await handle.result(timeout=RECOVERY) == "after"
        took = started["after"] - restarted
        print(f"\nfirst claim {took:.2f}s after the restart")
        assert took < RECOVERY
        assert not running.done(), "the worker stopped instead of reconnecting"

        # The server came back empty: the backend says so, loudly.
        async def reported() -> bool:
            return any(
                r.levelno == logging.ERROR and "lost its data" in r.getMessage()
                for r in caplog.records
            )

        deadline = time.monotonic() + 5
        while not await reported() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await reported(), "the data loss was not reported"
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
        drop = getattr(app.backend, "drop", None)
        if drop is not None:
            await drop()
        await app.close()
