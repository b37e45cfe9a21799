"""Helpers shared by the worker tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from workhorse import Worker, Workhorse


async def wait_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 5.0,
    what: str = "condition",
) -> None:
    """Poll ``check`` (sync or async) every 10 ms until it is true, or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(app: Workhorse, **options: Any) -> AsyncIterator[Worker]:
    """A worker running in the background for the block; stopped (fast) on the way out."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("reclaim_interval", 0.05)
    options.setdefault("heartbeat_interval", 0.5)
    worker = app.worker(**options)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        worker.stop()  # a second stop ends the grace: nothing a test left should linger
        await asyncio.wait_for(task, 10)


async def job_state(app: Workhorse, job_id: str) -> str:
    job = await app.get_job(job_id)
    assert job is not None
    return str(job.state)
