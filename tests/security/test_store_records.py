"""Hostile records written straight into each store: pickled bytes are never unpickled,
a task name is never imported, and the worker lives on to run the healthy jobs."""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from workhorse import Worker, Workhorse
from workhorse.backends import Backend
from workhorse.errors import UnknownTaskError
from workhorse.job import Event, NewJob, new_job_id

CANARY = "wh_canary_mod"


@asynccontextmanager
async def running(app: Workhorse) -> AsyncIterator[Worker]:
    worker = app.worker(queues=["default"], poll_interval=0.05, reclaim_interval=0.05)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert task.done() and task.exception() is None


async def final_event(backend: Backend, job_id: str, timeout: float = 10.0) -> Event:
    """The job's last finishing event from the durable log (not ``get``: a record that
    cannot be decoded is the quarantine's business, not this test's)."""
    deadline = time.monotonic() + timeout
    while True:
        for ev in await backend.events(0, 100_000):
            if ev.job_id == job_id and ev.type in ("job.completed", "job.failed"):
                return ev
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not finish within {timeout:g}s")
        await asyncio.sleep(0.05)


def _exists(path: Path) -> bool:
    """A marker left by an import or an unpickling (a tiny sync stat, fine in a test)."""
    return path.exists()


class _Evil:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A module that, if anything imported it, would leave a marker file."""
    marker = tmp_path / "imported"
    (tmp_path / f"{CANARY}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef handler(data=None):\n    return 'pwned'\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield marker
    sys.path.remove(str(tmp_path))
    sys.modules.pop(CANARY, None)


async def test_pickled_bytes_in_the_store_are_never_unpickled(
    backend: Backend, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    app = Workhorse(backend=backend, poll_interval=0.05)
    ran: list[Any] = []

    @app.task(retries=2)
    def t(data: Any) -> None:
        ran.append(data)

    bad = NewJob(new_job_id(), "t", "default", pickle.dumps(_Evil(marker)), max_attempts=3)
    assert (await backend.enqueue([bad]))[0].created
    good = await t.enqueue({"ok": 1})
    async with running(app):
        failed = await final_event(backend, bad.id)
        done = await final_event(backend, good.id)
    assert failed.type == "job.failed"
    error = failed.data["error"]
    assert error["type"] == "workhorse.errors.PayloadError"
    assert "payload is not JSON" in error["message"]
    assert failed.data["attempt"] == 1  # no retry: the same bytes cannot decode later
    assert done.type == "job.completed"
    assert ran == [{"ok": 1}]  # the handler never saw the pickled job
    assert not _exists(marker)
    counts = await backend.counts(["default"])
    assert (counts["default"]["failed"], counts["default"]["completed"]) == (1, 1)


@pytest.mark.parametrize(
    "name",
    [CANARY, f"{CANARY}.handler", f"{CANARY}:handler", "os.system", "subprocess:run"],
)
async def test_enqueue_never_imports_a_task_name(name: str, canary: Path) -> None:
    app = Workhorse("memory://")

    @app.task
    def known() -> None: ...

    with pytest.raises(UnknownTaskError, match="known tasks: known"):
        await app.enqueue(name, {"cmd": "id"})
    with pytest.raises(UnknownTaskError):
        await app.run(name, {"cmd": "id"}, timeout=1)
    assert CANARY not in sys.modules
    assert not _exists(canary)
    await app.close()


async def test_a_record_naming_an_unknown_task_fails_after_the_window(
    backend: Backend, canary: Path
) -> None:
    app = Workhorse(
        backend=backend, poll_interval=0.05, unknown_task_window=0.3, unknown_task_delay=0.05
    )
    ran: list[Any] = []

    @app.task
    def t(data: Any) -> None:
        ran.append(data)

    names = [f"{CANARY}:handler", f"{CANARY}.handler", "os.system", "subprocess:run"]
    hostile = [NewJob(new_job_id(), n, "default", b'{"cmd": "id"}') for n in names]
    await backend.enqueue(hostile)
    good = await t.enqueue({"ok": 1})
    async with running(app):
        assert (await final_event(backend, good.id)).type == "job.completed"
        for new in hostile:
            ev = await final_event(backend, new.id)
            assert ev.type == "job.failed"
            assert ev.data["error"]["type"] == "UnknownTask"
            assert new.task in ev.data["error"]["message"]
            assert "gave up after 0.3s" in ev.data["error"]["message"]
    for new in hostile:
        job = await backend.get(new.id)
        assert job is not None and job.state.value == "failed"
        assert job.attempts == 1  # the rolling-deploy retries did not spend attempts
    assert ran == [{"ok": 1}]
    assert CANARY not in sys.modules
    assert not _exists(canary)
