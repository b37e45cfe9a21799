"""The pytest plugin (entry point ``pytest11``, loaded wherever workhorse is installed):
test your own tasks without a server.

Tell it which app, in a conftest.py::

    @pytest.fixture
    def workhorse_app():
        from myproject.jobs import app
        return app

then ask for ``workhorse`` in an async test::

    async def test_welcome(workhorse):
        await signup(...)                              # your code enqueues a job
        workhorse.assert_enqueued("send_email", data={"to": "a@b.c"})
        await workhorse.run_until_idle()               # a worker runs what is due
        workhorse.clock.advance(60)                    # the store's time: delays, backoff

For the test, the app's store is a fresh memory store on a fake clock (``workhorse.clock``);
the app gets its own store back afterwards. ``workhorse.eager()`` runs each job as it is
enqueued, like Celery's ``task_always_eager``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from workhorse.app import Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.job import Job, JobState
from workhorse.testing import FakeClock

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures then say what is missing
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["Harness"]

_ALL = 1_000_000  # "every job" for the store's listing


class Harness:
    """The app on a memory store with a fake clock, and what a test asks of it."""

    def __init__(self, app: Workhorse, clock: FakeClock) -> None:
        self.app = app
        self.clock = clock
        self._running = False
        self._eager = False

    async def run_until_idle(self, max_jobs: int = 10_000) -> int:
        """Run every due job, and the jobs they enqueue, until none is due (jobs delayed or
        retried later wait: ``clock.advance`` makes them due). Returns the attempts run."""
        if self._running:
            return 0  # called from a job that enqueues (eager mode): the running worker takes it
        queues = sorted(
            {*self.app.settings.queues, *(t.defaults.queue for t in self.app.tasks.values())}
        )
        worker = self.app.worker(queues=queues, burst=True, scheduler=False, poll_interval=0.01)
        self._running = True
        try:
            await worker.run()
        finally:
            self._running = False
        if worker.processed > max_jobs:
            raise AssertionError(f"more than {max_jobs} attempts ran: a job enqueues forever?")
        return worker.processed

    def eager(self, on: bool = True) -> None:
        """Run each job at its enqueue (and what it enqueues), before enqueue returns."""
        self._eager = on

    async def after_enqueue(self) -> None:
        if self._eager:
            await self.run_until_idle()

    async def jobs(self, task: str | None = None, state: JobState | str | None = None) -> list[Job]:
        """Jobs in the store, oldest first."""
        found = await self.app.jobs(task=task, state=state, limit=_ALL)
        return list(reversed(found))

    async def assert_enqueued(
        self, task: str, *, data: Any = ..., count: int | None = None
    ) -> list[Job]:
        """Jobs of ``task`` (whose payload equals ``data``, when given) exist, ``count`` of
        them if given; returns them."""
        found = [j for j in await self.jobs(task) if data is ... or j.data == data]
        if (count is None and not found) or (count is not None and len(found) != count):
            every = [(j.task, j.data) for j in await self.jobs()]
            wanted = "" if data is ... else f" with data {data!r}"
            raise AssertionError(
                f"expected {'some' if count is None else count} job(s) of {task!r}{wanted}, "
                f"found {len(found)}; the store holds: {every}"
            )
        return found

    async def assert_not_enqueued(self, task: str) -> None:
        found = await self.jobs(task)
        if found:
            raise AssertionError(f"expected no job of {task!r}, found {len(found)}")


@pytest.fixture
def workhorse_app() -> Workhorse:
    """Override in your conftest.py: return your Workhorse app."""
    raise pytest.UsageError(
        "the workhorse fixture needs your app: define a fixture named workhorse_app in "
        "conftest.py that returns it (e.g. `from myproject.jobs import app; return app`)"
    )


@pytest.fixture
def workhorse_clock() -> FakeClock:
    return FakeClock()


def _patch_enqueue(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    client = harness.app.client
    enqueue, enqueue_many = client.enqueue, client.enqueue_many

    async def eager_enqueue(*args: Any, **kwargs: Any) -> Any:
        handle = await enqueue(*args, **kwargs)
        await harness.after_enqueue()
        return handle

    async def eager_many(*args: Any, **kwargs: Any) -> Any:
        handles = await enqueue_many(*args, **kwargs)
        await harness.after_enqueue()
        return handles

    monkeypatch.setattr(client, "enqueue", eager_enqueue)
    monkeypatch.setattr(client, "enqueue_many", eager_many)


async def _harness(
    app: Workhorse, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    if app.client.opened:
        raise pytest.UsageError(
            "workhorse_app returned an app whose store is open; the plugin gives it a memory "
            "store for the test: return it unopened"
        )
    before = app.client.replace_backend(MemoryBackend(clock=clock))
    harness = Harness(app, clock)
    _patch_enqueue(harness, monkeypatch)
    try:
        await app.open()
        yield harness
    finally:
        await app.close()
        app.client.replace_backend(before)


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def workhorse(
        workhorse_app: Workhorse, workhorse_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[Harness]:
        """The app on a fresh memory store with a fake clock (see the module's docs)."""
        async for harness in _harness(workhorse_app, workhorse_clock, monkeypatch):
            yield harness

else:  # pragma: no cover

    @pytest.fixture
    def workhorse() -> Harness:
        raise pytest.UsageError("the workhorse fixture needs pytest-asyncio: pip install it")
