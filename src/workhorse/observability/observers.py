"""What a worker keeps beside its loops to be watched: a tally of its jobs (always: a
microsecond per job), the store's job counters (setting ``stats``) and, with a metrics
port, the Prometheus exporter."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from workhorse.job import Event
from workhorse.observability.stats import StatsWriter
from workhorse.observability.tally import Tally

if TYPE_CHECKING:
    from workhorse.client import Client
    from workhorse.observability.process import Exporter

# One set per client: workers sharing a client share its figures, and must not count twice.
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
        self.tally = Tally(histograms=client.settings.metrics_port is not None)
        self.stats: StatsWriter | None = None
        self.exporter: Exporter | None = None
        # Bound once: the bus removes a handler by identity, and each `self._x` is new.
        self._handlers = (("job.stalled", self._stalled), ("cron.fired", self._cron))

    async def start(self) -> None:
        settings = self.client.settings
        for kind, handler in self._handlers:
            self.client.bus.on(kind, handler)
        if settings.stats:
            self.stats = StatsWriter(self.client, self.tally)
            self.stats.start()
        if settings.metrics_port is not None:
            from workhorse.observability.process import Exporter

            self.exporter = Exporter(self.tally)
            await self.exporter.serve(settings.metrics_port)

    async def _stalled(self, event: Event) -> None:
        # The reclaim names only the job: its record gives the labels (stalls are rare).
        job = None if event.job_id is None else await self.client.get_job(event.job_id)
        self.tally.stalled(*((job.queue, job.task) if job is not None else ("", "")))

    def _cron(self, event: Event) -> None:
        self.tally.cron_fired(str(event.data.get("schedule", "")), event.task or "")

    async def stop(self) -> None:
        for kind, handler in self._handlers:
            self.client.bus.off(kind, handler)
        if self.exporter is not None:
            await self.exporter.close()
        if self.stats is not None:
            with contextlib.suppress(Exception):
                await self.stats.stop()
