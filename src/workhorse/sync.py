"""A thin blocking facade for producers in sync code (Django, Flask, scripts).

It runs the async client on a private event loop in a daemon thread, with its own
backend connection, so it never touches an event loop the application owns."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from workhorse.app import Workhorse
    from workhorse.job import Job, JobState
    from workhorse.task import JobHandle, Task

T = TypeVar("T")


class SyncApp:
    def __init__(self, app: Workhorse) -> None:
        from workhorse.app import Workhorse

        self._client = Workhorse(**app._overrides)
        self._client.tasks = app.tasks  # one registry, two connections
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="workhorse-sync"
        )
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

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

    def retry(self, job_id: str) -> bool:
        return self._call(self._client.retry(job_id))

    def pause(self, queue: str) -> None:
        self._call(self._client.pause(queue))

    def resume(self, queue: str) -> None:
        self._call(self._client.resume(queue))

    def is_paused(self, queue: str) -> bool:
        return self._call(self._client.is_paused(queue))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
