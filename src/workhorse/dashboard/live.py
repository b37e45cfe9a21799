"""Live updates: one shared follower of the event log per process tells every open page
which queues and jobs changed (type, job and queue only: no payload leaves this way)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson

from workhorse.client import Client
from workhorse.http.closing import closing

_PAGE = 1000
RECHECK = 5.0  # seconds between checks that the stream's session has not ended


class Tail:
    """The event log's newest cursor, advanced at most once per ``poll`` for all pages."""

    def __init__(self, client: Client, poll: float) -> None:
        self.client = client
        self.poll = poll
        self.cursor = -1  # not yet found
        self.recent: list[tuple[int, bytes]] = []  # (id, SSE message) of the last read
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def advance(self) -> int:
        async with self._lock:
            if time.monotonic() - self._read_at < self.poll and self.cursor >= 0:
                return self.cursor
            after = self.cursor if self.cursor >= 0 else await self._newest()
            fresh: list[tuple[int, bytes]] = []
            while True:
                page = await self.client.events(after, _PAGE)
                if page:
                    after = page[-1].id
                for e in page:
                    data = orjson.dumps({"type": e.type, "job": e.job_id, "queue": e.queue})
                    fresh.append((e.id, b"id: %d\ndata: %s\n\n" % (e.id, data)))
                if len(page) < _PAGE:
                    break
            self.cursor = after
            self.recent = fresh[-_PAGE:]
            self._read_at = time.monotonic()
            return self.cursor

    async def _newest(self) -> int:
        """The newest event's id: the store's own answer (the newest entry of each Redis
        stream, max(id) in SQL), not a search of one-event reads over the log."""
        return await self.client.events_head()


async def stream(
    tail: Tail,
    after: int | None,
    alive: Callable[[], Awaitable[bool]] | None = None,
    recheck: float = RECHECK,
) -> AsyncIterator[bytes]:
    """Change notices after ``after`` (from now when None) until the page goes away, or
    until ``alive`` (asked every ``recheck`` seconds) says its session has ended."""
    yield b"retry: 2000\n\n"
    seen = await tail.advance() if after is None else after
    idle = 0
    checked = time.monotonic()
    while True:
        await asyncio.sleep(tail.poll)
        if closing():
            return
        if alive is not None and time.monotonic() - checked >= recheck:
            if not await alive():
                return
            checked = time.monotonic()
        await tail.advance()
        sent = False
        for event_id, message in tail.recent:
            if event_id > seen:
                yield message
                seen = event_id
                sent = True
        seen = max(seen, tail.cursor)
        idle = 0 if sent else idle + 1
        if idle >= 15:  # a comment now and then keeps proxies from closing the stream
            idle = 0
            yield b": idle\n\n"
