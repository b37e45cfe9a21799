"""Group commit for flow events: events added while one batch is being published go
together in the next, so concurrent steps share one ``publish`` round trip."""

from __future__ import annotations

import asyncio
import logging

from workhorse.backends import Backend
from workhorse.job import Event

log = logging.getLogger("workhorse.flows")


class Publisher:
    def __init__(self, backend: Backend, max_batch: int = 500) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._pending: list[tuple[Event, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, event: Event) -> asyncio.Future[None]:
        """Queue the event for the next batch; the future settles once it is stored.
        Batches go out in order, so awaiting a caller's last event covers its others."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, written))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="workhorse-flow-events")
        return written

    async def publish(self, event: Event) -> None:
        await self.add(event)

    async def _flush(self) -> None:
        delay = 0.05
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                try:
                    await self.backend.publish([event for event, _ in batch])
                except Exception:
                    # Kept and tried again: a step's outcome waits for its events, so an
                    # event is stored before its step counts as done, or the step reruns.
                    log.exception("publishing %d flow event(s) failed; retrying", len(batch))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.05
                del self._pending[: len(batch)]
                for _, written in batch:
                    if not written.done():
                        written.set_result(None)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None
