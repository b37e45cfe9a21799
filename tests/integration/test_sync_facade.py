"""The blocking facade for producers in sync code (Django, Flask, scripts)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _drop
from workhorse import ConfigError, JobFailed, JobState, Workhorse
from workhorse.backends import Backend, backend_from_url


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


def _add_app(app: Workhorse) -> Workhorse:
    @app.task
    def add(data: dict[str, int]) -> int:
        return data["a"] + data["b"]

    return app


async def _seen(view: Backend, job_id: str) -> tuple[bool, int]:
    """What a view of the store shows: the job, and the default queue's queued count."""
    await view.open()
    try:
        job = await view.get(job_id)
        return job is not None, (await view.counts(["default"]))["default"]["queued"]
    finally:
        if view.capabilities.multi_process:
            await view.close()


async def _drop_store(url: str) -> None:
    """Remove the test's store once every app on it has closed: an app's close writes its
    enqueue counts, which a drop made before it would leave behind."""
    store = backend_from_url(url)
    if store.capabilities.multi_process:
        await store.open()
        await _drop(store)
        await store.close()


def test_sync_enqueue_lands_in_the_apps_store(store_url: str) -> None:
    """app.sync writes where the app reads, with the app built from a URL."""
    url = store_url
    app = _add_app(Workhorse(url))
    try:
        handle = app.sync.enqueue("add", {"a": 1, "b": 2})
        assert app.sync.counts(["default"])["default"]["queued"] == 1
        # The app's own (async) view; memory:// has no other.
        assert asyncio.run(_seen(app.backend, handle.id)) == (True, 1)
    finally:
        app.sync.close()
        asyncio.run(_drop_store(url))


def test_sync_uses_a_backend_object(backend_kind: str, store_url: str) -> None:
    """A backend= object is the store app.sync writes to, not the default URL's."""
    url = store_url
    backend = backend_from_url(url)
    app = _add_app(Workhorse(backend=backend))
    try:
        handle = app.sync.enqueue("add", {"a": 1, "b": 2})
        view = backend if backend_kind == "memory" else backend_from_url(url)
        assert asyncio.run(_seen(view, handle.id)) == (True, 1)
    finally:
        app.sync.close()
        asyncio.run(_drop_store(url))


async def test_sync_from_a_thread_reaches_a_running_app(store_url: str) -> None:
    """Sync code in a thread of an async app (a sync view under ASGI) enqueues into the
    store the running app sees."""
    async with _add_app(Workhorse(store_url)) as app:
        handle = await asyncio.to_thread(app.sync.enqueue, "add", {"a": 1, "b": 2})
        assert await app.get_job(handle.id) is not None
        assert (await app.counts(["default"]))["default"]["queued"] == 1
    await _drop_store(store_url)


async def test_sync_inside_the_apps_own_loop_says_to_await() -> None:
    """It would wait for the loop it blocks: refused with the fix, not a hang."""
    async with _add_app(Workhorse("memory://")) as app:
        with pytest.raises(ConfigError, match="await app.enqueue"):
            app.sync.enqueue("add", {"a": 1, "b": 2})


SCRIPT = """
import sys
from workhorse import Workhorse

app = Workhorse(sys.argv[1])


@app.task
def add(data: dict) -> int:
    return data["a"] + data["b"]


print(app.sync.enqueue("add", {"a": 1, "b": 2}).id)
"""


def test_a_script_that_never_closes_the_facade_exits_quietly(
    backend_kind: str, store_url: str, tmp_path: Path
) -> None:
    """The quickstart's sync example as a script: no close(), and still no warning at
    exit; the job it enqueued is in the store."""
    if backend_kind == "memory":
        pytest.skip("memory:// dies with the script")
    import subprocess
    import sys

    (tmp_path / "producer.py").write_text(SCRIPT)
    ran = subprocess.run(
        [sys.executable, "-W", "error", "producer.py", store_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    try:
        assert asyncio.run(_seen(backend_from_url(store_url), ran.stdout.strip())) == (True, 1)
    finally:
        asyncio.run(_drop_store(store_url))
