"""The blocking facade for producers in sync code (Django, Flask, scripts)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from workhorse import JobFailed, JobState, Workhorse


def make_app(url: str) -> Workhorse:
    app = Workhorse(url, poll_interval=0.05)

    @app.task
    def add(data: dict[str, int]) -> int:
        return data["a"] + data["b"]

    @app.task
    async def boom() -> None:
        raise ValueError("no")

    return app


def test_sync_producer_with_a_worker_elsewhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sync.db'}"
    worker_app = make_app(url)
    worker = worker_app.worker(queues=["default"])
    stopped = threading.Event()

    def serve() -> None:
        async def main() -> None:
            await worker.run()
            await worker_app.close()

        asyncio.run(main())
        stopped.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    app = make_app(url)
    try:
        assert app.sync.run("add", {"a": 2, "b": 3}, timeout=10) == 5
        handle = app.sync.enqueue("add", {"a": 1, "b": 1})
        job = app.sync.wait(handle.id, 10)
        assert job.state is JobState.COMPLETED
        assert job.result == 2
        with pytest.raises(JobFailed, match="ValueError: no"):
            app.sync.run("boom", timeout=10)
        handles: list[Any] = app.sync.enqueue_many("add", [{"a": i, "b": i} for i in range(3)])
        assert len(handles) == 3
        app.sync.pause("default")
        assert app.sync.is_paused("default")
        app.sync.resume("default")
        assert app.sync.counts()["default"]["failed"] == 1
    finally:
        app.sync.close()
        worker.stop_threadsafe()
        thread.join(10)
    assert stopped.wait(10)
