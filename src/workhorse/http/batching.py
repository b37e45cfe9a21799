"""Group commit for enqueues over HTTP: requests that arrive while one enqueue is being
written go together in the next, so a busy server writes one batch per round trip."""

from __future__ import annotations

import asyncio

from workhorse import events
from workhorse.client import Client
from workhorse.job import EnqueueResult, NewJob

_MAX_BATCH = 500


class EnqueueBatcher:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._pending: list[tuple[NewJob, asyncio.Future[EnqueueResult]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def enqueue(self, new: NewJob) -> EnqueueResult:
        """Write ``new`` with the next batch; the store's answer for it."""
        fut: asyncio.Future[EnqueueResult] = asyncio.get_running_loop().create_future()
        self._pending.append((new, fut))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="workhorse-http-enqueue")
        return await fut

    async def _write(self) -> None:
        client = self.client
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                try:
                    backend = await client.store()
                    results = await backend.enqueue([new for new, _ in batch])
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                emit = client.bus.wants("job.queued")
                for (new, fut), res in zip(batch, results, strict=True):
                    if emit and (res.created or res.replaced):
                        client.bus.emit(events.queued(res.id, new.task, new.queue))
                    if not fut.done():
                        fut.set_result(res)
        finally:
            self._writer = None
