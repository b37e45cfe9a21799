"""The in-process event bus. The durable log lives in the backend; this bus tells code in
this process what its own worker and producers just did."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from workhorse.job import Event

log = logging.getLogger("workhorse.events")

JOB_EVENTS = (
    "job.queued",
    "job.started",
    "job.progress",
    "job.completed",
    "job.failed",
    "job.retrying",
    "job.cancelled",
    "job.stalled",
)

Handler = Callable[[Event], Awaitable[None] | None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[Handler, str | None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, type_: str, handler: Handler, *, task: str | None = None) -> None:
        """Call ``handler(event)`` for each event of ``type_`` ("*" for all)."""
        self._handlers.setdefault(type_, []).append((handler, task))

    def off(self, type_: str, handler: Handler) -> None:
        self._handlers[type_] = [h for h in self._handlers.get(type_, []) if h[0] is not handler]

    def wants(self, type_: str) -> bool:
        return type_ in self._handlers or "*" in self._handlers

    def emit(self, event: Event) -> None:
        for handler, task in (*self._handlers.get(event.type, ()), *self._handlers.get("*", ())):
            if task is not None and task != event.task:
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    t = asyncio.ensure_future(result)
                    self._tasks.add(t)
                    t.add_done_callback(self._done)
            except Exception:
                log.exception("event handler %r failed on %s", handler, event.type)

    def _done(self, t: asyncio.Task[Any]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.error("event handler failed", exc_info=exc)
