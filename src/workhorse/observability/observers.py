"""What a worker starts beside its loops to be watched: the store's job counters and,
with a metrics port, its Prometheus figures."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from workhorse.observability.stats import StatsWriter

if TYPE_CHECKING:
    from workhorse.client import Client
    from workhorse.observability.process import WorkerMetrics


# One set per client: workers sharing a client share its bus, and must not count twice.
_shared: dict[int, tuple[Observers, int]] = {}


async def acquire(client: Client) -> Observers:
    found = _shared.get(id(client))
    if found is not None:
        _shared[id(client)] = (found[0], found[1] + 1)
        return found[0]
    observers = Observers(client)
    _shared[id(client)] = (observers, 1)
    await observers.start()
    return observers


async def release(client: Client) -> None:
    found = _shared.pop(id(client), None)
    if found is None:
        return
    observers, users = found
    if users > 1:
        _shared[id(client)] = (observers, users - 1)
    else:
        await observers.stop()


class Observers:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.stats: StatsWriter | None = None
        self.metrics: WorkerMetrics | None = None

    async def start(self) -> None:
        settings = self.client.settings
        if settings.stats:
            self.stats = StatsWriter(self.client)
            self.stats.start()
        if settings.metrics_port is not None:
            from workhorse.observability.process import WorkerMetrics

            self.metrics = WorkerMetrics(self.client)
            self.metrics.start()
            await self.metrics.serve(settings.metrics_port)

    def dropped(self, job_id: str) -> None:
        if self.metrics is not None:
            self.metrics.dropped(job_id)

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.stats is not None:
            with contextlib.suppress(Exception):
                await self.stats.stop()
