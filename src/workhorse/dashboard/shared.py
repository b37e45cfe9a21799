"""Reads every open page shares: one store read serves all viewers for up to a second,
however many pages reload at once (the counts are a scan on the SQL stores). Callers put
the event log's cursor in the key, so a change makes the next read fresh."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

TTL = 1.0
MAX_KEYS = 1000


class Shared:
    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._values: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, key: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """The value read at most ``ttl`` seconds ago, else a fresh read (one at a time)."""
        if len(self._locks) > MAX_KEYS:  # filters and cursors come and go: stay bounded
            self._locks.clear()
            self._values.clear()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._values.get(key)
            if found is not None and time.monotonic() - found[0] < self.ttl:
                return found[1]
            value = await read()
            self._values[key] = (time.monotonic(), value)
            return value

    def clear(self) -> None:
        """Forget every value: after an action, its page shows the change at once."""
        self._values.clear()
