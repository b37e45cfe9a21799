"""Live updates: one shared follower of the event log per process tells every open page
which queues and jobs changed (type, job and queue only: no payload leaves this way)."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson

from workhorse.client import Client
from workhorse.http.closing import closing

_PAGE = 1000
KEEP = 1000  # notices the follower keeps for streams that start from a page's cursor
RECHECK = 5.0  # seconds between checks that the stream's session has not ended


class Tail:
    """The event log's newest cursor, advanced at most once per ``poll`` for all pages; it
    keeps the newest ``keep`` notices, so a stream behind it (a page's own cursor, or one
    whose sleep outlasted two reads) catches up on each of them."""

    def __init__(self, client: Client, poll: float, keep: int = KEEP) -> None:
        self.client = client
        self.poll = poll
        self.keep = keep
        self.cursor = -1  # not yet found
        self.recent: list[tuple[int, bytes]] = []  # (id, SSE message), oldest first
        self.floor = -1  # the events up to here are not in ``recent``
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def advance(self) -> int:
        async with self._lock:
            if time.monotonic() - self._read_at < self.poll and self.cursor >= 0:
                return self.cursor
            if self.cursor < 0:
                self.cursor = self.floor = await self._newest()
            after = self.cursor
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
            kept = self.recent + fresh
            if len(kept) > self.keep:
                self.floor = kept[-self.keep - 1][0]
                kept = kept[-self.keep :]
            self.recent = kept
            self.cursor = after
            self._read_at = time.monotonic()
            return self.cursor

    async def _newest(self) -> int:
        """The newest event's id: the store's own answer (the newest entry of each Redis
        stream, max(id) in SQL), not a search of one-event reads over the log."""
        return await self.client.events_head()

    def since(self, seen: int) -> tuple[list[bytes], int]:
        """The notices after ``seen`` and the cursor they bring it to; one catch-up notice
        when some of them are no longer kept (the page reloads what it shows anyway)."""
        if seen < self.floor:
            data = orjson.dumps({"type": "catch-up", "job": None, "queue": None})
            return [b"id: %d\ndata: %s\n\n" % (self.cursor, data)], self.cursor
        first = bisect.bisect_right(self.recent, seen, key=lambda kept: kept[0])  # by id
        return [m for _, m in self.recent[first:]], max(seen, self.cursor)


async def stream(
    tail: Tail,
    after: int | None,
    alive: Callable[[], Awaitable[bool]] | None = None,
    recheck: float = RECHECK,
) -> AsyncIterator[bytes]:
    """Change notices after ``after`` (a page's cursor, taken before it read what it shows;
    from now when None) until the page goes away, or until ``alive`` (asked every
    ``recheck`` seconds) says its session has ended."""
    yield b"retry: 2000\n\n"
    head = await tail.advance()
    seen = head if after is None else after
    idle = 0
    checked = time.monotonic()
    while True:
        messages, seen = tail.since(seen)
        for message in messages:
            yield message
        idle = 0 if messages else idle + 1
        if idle >= 15:  # a comment now and then keeps proxies from closing the stream
            idle = 0
            yield b": idle\n\n"
        await asyncio.sleep(tail.poll)
        if closing():
            return
        if alive is not None and time.monotonic() - checked >= recheck:
            if not await alive():
                return
            checked = time.monotonic()
        await tail.advance()
