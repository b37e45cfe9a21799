"""A thin blocking facade for producers in sync code (Django, Flask, scripts).

It talks to the client's store. A store other processes reach by URL gets its own
connection on a private event loop in a daemon thread, so the facade never touches an
event loop the application owns. A store only the client's object reaches (``memory://``,
a ``backend=`` object) is used through that client: on its loop when it runs in another
thread, else on the private loop."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures.thread  # noqa: F401  (registers its exit hook first: ours runs before it)
import contextlib
import threading
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from workhorse.client import KEEP
from workhorse.errors import ConfigError

if TYPE_CHECKING:
    from workhorse.client import Client
    from workhorse.job import Job, JobState
    from workhorse.task import JobHandle, Task

T = TypeVar("T")


_open: set[SyncApp] = set()


def _close_open() -> None:
    """Close every facade a script never closed, quietly: exiting anyway, an unreachable
    store must not hold the exit or print a traceback."""
    for facade in list(_open):
        with contextlib.suppress(Exception):
            facade.close(timeout=5)


# Run before concurrent.futures shuts its executors (threading's exit hooks run before
# atexit's, newest first): a close from atexit found them gone and dropped the last
# second's counts. CPython-only hook, hence the fallback.
_at_threading_exit = getattr(threading, "_register_atexit", None)
if _at_threading_exit is None:
    atexit.register(_close_open)


_hooked = False


def _register_open(facade: SyncApp) -> None:
    global _hooked
    _open.add(facade)
    if not _hooked and _at_threading_exit is not None:
        # Registered on first use, after concurrent.futures' own hook: newest runs first.
        _at_threading_exit(_close_open)
        _hooked = True


def _shared(client: Client) -> bool:
    """Whether only the client's own backend object reaches its store."""
    return client.backend_given or not client.backend.capabilities.multi_process


class SyncApp:
    def __init__(self, client: Client) -> None:
        self._main = client
        self._shared = _shared(client)
        # One registry, two connections, unless only the client's own object reaches it.
        self._client = client if self._shared else client.connection()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="workhorse-sync"
        )
        self._thread.start()
        # A script that never calls close() must still exit quietly, its connections closed.
        _register_open(self)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The facade's private event loop."""
        return self._loop

    def _target(self) -> asyncio.AbstractEventLoop:
        """The loop a call runs on: the app's own while it runs elsewhere, if shared."""
        if not self._shared:
            return self._loop
        loop = self._main.loop
        if loop is None or loop is self._loop or loop.is_closed() or not loop.is_running():
            return self._loop
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            raise ConfigError(
                "app.sync was called inside the app's own event loop, where it would wait "
                "for itself: await the async method (await app.enqueue(...)) instead"
            )
        return loop

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        try:
            loop = self._target()
        except ConfigError:
            coro.close()  # never started: no "never awaited" warning on top of the error
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def enqueue(
        self, task: str | Task[Any, Any], data: Any = None, **options: Any
    ) -> JobHandle[Any]:
        return self._call(self._client.enqueue(task, data, **options))

    def enqueue_many(
        self, task: str | Task[Any, Any], items: Iterable[Any], **options: Any
    ) -> list[JobHandle[Any]]:
        return self._call(self._client.enqueue_many(task, list(items), **options))

    def run(
        self,
        task: str | Task[Any, Any],
        data: Any = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        return self._call(self._client.run(task, data, timeout=timeout, **options))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        return self._call(self._client.wait(job_id, timeout))

    def get_job(self, job_id: str) -> Job | None:
        return self._call(self._client.get_job(job_id))

    def jobs(self, **filters: Any) -> list[Job]:
        return self._call(self._client.jobs(**filters))

    def counts(self, queues: list[str] | None = None) -> dict[str, dict[str, int]]:
        return self._call(self._client.counts(queues))

    def cancel(self, job_id: str) -> JobState | None:
        return self._call(self._client.cancel(job_id))

    def retry(self, job_id: str, data: Any = KEEP, *, by: str | None = None) -> bool:
        return self._call(self._client.retry(job_id, data, by=by))

    def pause(self, queue: str) -> None:
        self._call(self._client.pause(queue))

    def resume(self, queue: str) -> None:
        self._call(self._client.resume(queue))

    def is_paused(self, queue: str) -> bool:
        return self._call(self._client.is_paused(queue))

    def close(self, timeout: float | None = None) -> None:
        """Close the facade's connection (or the app's store, when this facade opened it)
        and stop its loop. Done at interpreter exit for a facade never closed."""
        _open.discard(self)
        if self._loop.is_closed():
            return
        if not self._shared:
            self._call(self._client.close(), timeout)
        elif self._main.loop is self._loop:
            self._call(self._main.close(), timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
