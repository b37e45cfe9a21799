"""The overview's charts: jobs enqueued, completed and failed, the failure rate and the mean wait in
the queue per minute over the last hour, summed from the store's per-minute counters (never
from job rows), cached briefly for all pages."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from workhorse.client import Client
from workhorse.observability import stats

CACHE_SECONDS = 5.0


class Charts:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._values: dict[str | None, tuple[float, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def hour(self, queue: str | None = None) -> dict[str, Any]:
        """``{"t": [minute starts], "enqueued": [...], "completed": [...], "failed": [...],
        "failure_rate":
        [percent or None], "wait_ms": [mean wait of the jobs started, or None]}``, oldest
        first; for one queue or every queue."""
        async with self._lock:
            found = self._values.get(queue)
            if found is None or time.monotonic() - found[0] > CACHE_SECONDS:
                if len(self._values) > 1000:  # queues come and go: keep the cache bounded
                    self._values.clear()
                found = (time.monotonic(), await self._read(queue))
                self._values[queue] = found
            return found[1]

    async def _read(self, queue: str | None) -> dict[str, Any]:
        pairs = [(q, t) for q, t in await stats.pairs(self.client) if queue in (None, q)]
        # Every series at once: Redis and PostgreSQL pipeline the counter reads.
        reads = [(kind, q, t) for q, t in pairs for kind in stats.MINUTE_KINDS]
        series = await asyncio.gather(
            *(stats.per_minute(self.client, kind, q, t, 60) for kind, q, t in reads)
        )
        minutes: list[int] = []
        sums = {kind: [0] * 60 for kind in stats.MINUTE_KINDS}
        for (kind, _, _), one in zip(reads, series, strict=True):
            minutes = [m for m, _ in one]
            for i, (_, n) in enumerate(one):
                sums[kind][i] += n
        if not minutes:
            now = int(await (await self.client.store()).now()) // 60 * 60
            minutes = [now - 60 * (59 - i) for i in range(60)]
        rate = [
            None if d + f == 0 else round(100 * f / (d + f), 1)
            for d, f in zip(sums["completed"], sums["failed"], strict=True)
        ]
        wait = [
            None if n == 0 else round(ms / n, 1)
            for ms, n in zip(sums["wait_ms"], sums["started"], strict=True)
        ]
        return {
            "t": minutes,
            "enqueued": sums["enqueued"],
            "completed": sums["completed"],
            "failed": sums["failed"],
            "failure_rate": rate,
            "wait_ms": wait,
        }
