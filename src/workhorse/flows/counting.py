"""Group commit for counted flows' counts of live steps: adds made while one batch is in
flight (or in the same turn of the event loop) go together in the next, so the steps a
finish batch ends at once share one ``counter_add_many`` round trip; each caller gets its
own counter's value, as ``counter_add`` would have answered it."""

from __future__ import annotations

import asyncio

from workhorse.backends import Backend

Item = tuple[str, int, float | None]  # key, n, ttl


class Counts:
    def __init__(self, backend: Backend, max_batch: int = 500) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, key: str, n: int, ttl: float | None = None) -> asyncio.Future[int]:
        """Queue the add for the next batch; the future gets the counter's new value, or
        the batch's error (an add is never sent twice: a lost reply may have applied it)."""
        value: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(((key, n, ttl), value))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="workhorse-flow-counts")
        return value

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: len(batch)]
                try:
                    values = await self.backend.counter_add_many([item for item, _ in batch])
                except Exception as exc:
                    for _, value in batch:
                        if not value.done():
                            value.set_exception(exc)
                    continue
                except BaseException:
                    for _, value in batch:
                        value.cancel()
                    raise
                for (_, value), n in zip(batch, values, strict=True):
                    if not value.done():
                        value.set_result(n)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None
                # Cancelled: the adds not sent yet are not made, and their callers hear so.
                for _, value in self._pending:
                    value.cancel()
                self._pending.clear()
