"""Helpers for testing code that uses workhorse.

``call`` runs a task's handler directly, with a context that keeps its log lines and
progress, and no store::

    result = await call(send_email, {"to": "a@b.c"})
    ctx = make_context(send_email)
    await call(send_email, {"to": "a@b.c"}, ctx=ctx)
    assert ctx.progress_values == [50] and ctx.messages == ["sending"]

``FakeClock`` drives the memory backend's clock by hand, so lease expiry, retry backoff
and delayed jobs can be tested without sleeping::

    clock = FakeClock()
    app = Workhorse(backend=MemoryBackend(clock=clock))
    await task.options(delay=60).enqueue(data)
    clock.advance(60)          # the job is due now
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from workhorse import codec
from workhorse.backends import loglines
from workhorse.client import Client
from workhorse.context import JobContext
from workhorse.job import JobState, Lease, new_job_id
from workhorse.registry import Registry
from workhorse.settings import Settings
from workhorse.task import JobHandle, Task

__all__ = ["CallContext", "FakeClock", "call", "make_context"]


class CallContext(JobContext):
    """A ``JobContext`` for a direct call: what the handler logs, reports and enqueues is
    kept here for the test to read, instead of going to a store."""

    __slots__ = ("enqueued", "kept", "lost", "progress_values")

    def __init__(self, client: Client, lease: Lease) -> None:
        super().__init__(client, lease)
        self.kept: list[dict[str, Any]] = []
        self.lost = 0  # lines past the caps, shown as one first line (as the store does)
        self.progress_values: list[Any] = []
        self.enqueued: list[tuple[str, Any, dict[str, Any]]] = []

    @property
    def lines(self) -> list[dict[str, Any]]:
        """The log as a store would keep it: ``{"at", "level", "message", "fields"?}`` per
        line, the newest within the caps, after a first line counting those dropped."""
        s = self.client.settings
        self.kept, dropped = loglines.kept(
            [*self.kept, *self.drain_logs()], s.max_log_lines, s.max_log_bytes
        )
        self.lost += self.take_dropped() + dropped
        return loglines.shown(self.kept, self.lost)

    @property
    def messages(self) -> list[str]:
        return [line["message"] for line in self.lines]

    async def progress(self, value: Any) -> None:
        codec.encode_payload(value, self.client.settings.max_payload, "progress")
        self.progress_values.append(value)

    async def enqueue(
        self, task: str | Task[Any, Any], data: Any = None, **options: Any
    ) -> JobHandle[Any]:
        """Record the follow-up job instead of enqueuing it."""
        name = task if isinstance(task, str) else task.name
        self.enqueued.append((name, data, options))
        queue = options.get("queue", "default" if isinstance(task, str) else task.defaults.queue)
        return JobHandle(self.client, new_job_id(), name, queue, "created", JobState.QUEUED)


def make_context(
    task: Task[Any, Any] | str = "task",
    *,
    job_id: str | None = None,
    attempt: int = 1,
    max_attempts: int = 1,
    queue: str | None = None,
    **settings: Any,
) -> CallContext:
    """A context as a worker would give ``task``'s handler, on no store. ``settings``
    (``max_log_lines``, ``max_payload`` ...) are the app's that the context obeys."""
    name = task if isinstance(task, str) else task.name
    if queue is None:
        queue = "default" if isinstance(task, str) else task.defaults.queue
    timeout = None if isinstance(task, str) else task.defaults.timeout
    loaded = Settings.load(env={}, url="memory://", **settings)
    client = Client(Registry(), lambda: loaded)
    lease = Lease(
        job_id or new_job_id(),
        "test",
        name,
        queue,
        b"",
        attempt,
        max_attempts,
        timeout,
        loaded.lease,
        time.time(),
    )
    return CallContext(client, lease)


async def call(
    task: Task[Any, Any],
    data: Any = None,
    *,
    ctx: CallContext | None = None,
    timeout: float | None = None,
) -> Any:
    """Run ``task``'s handler on ``data`` as a worker would: the payload validated and
    passed through JSON, a sync function in a thread, the task's ``timeout`` (or this
    one) applied, the result checked to be JSON and returned as ``app.run`` returns it."""
    if ctx is None:
        ctx = make_context(task)
    value = task.decode(task.prepare(data)[1])
    args = task.args(value, ctx)
    limit = task.defaults.timeout if timeout is None else timeout
    async with asyncio.timeout(limit):
        if task.is_async:
            result = await task.fn(*args)
        else:
            result = await asyncio.to_thread(task.fn, *args)
    return task.typed_result(codec.loads(task.encode_result(result)))


class FakeClock:
    """A clock that moves only when told to. Calling it returns epoch seconds, as
    ``time.time`` does, so it can stand in wherever a backend takes ``clock=``."""

    __slots__ = ("_now",)

    def __init__(self, start: float | None = None) -> None:
        # Start at the real time so job ids, log lines and datetimes look ordinary.
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float | timedelta) -> float:
        """Move the clock forward and return the new time."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if step < 0:
            raise ValueError(f"a clock only moves forward; advance() got {step}")
        self._now += step
        return self._now

    def set(self, now: float) -> None:
        """Jump to an absolute time (epoch seconds), forward only."""
        if now < self._now:
            raise ValueError(f"a clock only moves forward: {now} is before {self._now}")
        self._now = float(now)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
