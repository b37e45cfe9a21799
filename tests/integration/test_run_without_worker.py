"""run() with no live worker on the job's queue says so, once, instead of waiting in
silence; with a worker on the queue it says nothing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.worker.worker_helpers import running
from workhorse import RunTimeout, Workhorse
from workhorse import client as app_module


@pytest.fixture(autouse=True)
def soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "NO_WORKER_AFTER", 0.3, raising=False)


async def _beating(app: Workhorse) -> None:
    """The worker's first heartbeat is in the store (a loaded machine may take a while)."""
    async with asyncio.timeout(10):
        while not await app.workers():
            await asyncio.sleep(0.02)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_run_with_no_worker_warns_once(
    app: Workhorse, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(queue="priority")
    async def nap() -> None:
        pass

    with caplog.at_level(logging.WARNING, "workhorse"), pytest.raises(RunTimeout):
        await nap.run(timeout=1.5)
    (message,) = _warnings(caplog)
    assert "no live worker consumes queue 'priority'" in message
    assert "workhorse worker MODULE:APP --queues priority" in message


async def test_run_with_a_worker_on_the_queue_is_quiet(
    app: Workhorse, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    async def nap() -> str:
        await asyncio.sleep(1)
        return "rested"

    async with running(app, queues=["default"]):
        await _beating(app)
        with caplog.at_level(logging.WARNING, "workhorse"):
            assert await nap.run(timeout=20) == "rested"
    assert _warnings(caplog) == []


async def test_a_worker_on_another_queue_does_not_count(
    app: Workhorse, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(queue="priority")
    async def nap() -> None:
        pass

    async with running(app, queues=["default"]):
        await _beating(app)
        with caplog.at_level(logging.WARNING, "workhorse"), pytest.raises(RunTimeout):
            await nap.run(timeout=1.5)
    assert len(_warnings(caplog)) == 1
