"""Jobs enqueued: each client counts the jobs it creates (``Client.enqueued``, a dict add
per call); this module adds those counts to the store's counters once a second (setting
``stats``, as the workers do) and shows them in the process's Prometheus figures: a
worker's port, and prometheus_client's default registry when the process uses it."""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

from workhorse.observability.stats import StatsWriter, produced

if TYPE_CHECKING:
    from workhorse.client import Client, Counter

# Every client of this process that counted a job (weak: a dropped client takes its counts).
_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_registered = False

HELP = "Jobs created by enqueue calls in this process (duplicates of a singleton not counted)"


def counting(client: Client) -> Counter | None:
    """``Client.counting``: called at a client's first job."""
    _clients.add(client)
    _register()
    if not client.settings.stats:
        return None
    writer = StatsWriter(client, produced(client))
    writer.start()
    return writer


def enqueued() -> dict[tuple[str, str], int]:
    """Jobs created by every client of this process, per (queue, task)."""
    out: dict[tuple[str, str], int] = {}
    for client in list(_clients):
        for key, n in list(client.enqueued.items()):
            out[key] = out.get(key, 0) + n
    return out


class _Collector:
    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("workhorse_jobs_enqueued", HELP, labels=["queue", "task"])
        for (queue, task), n in sorted(enqueued().items()):
            family.add_metric([queue, task], n)
        yield family


def _register() -> None:
    """Into prometheus_client's default registry, once, if the process imported it: a
    producer that exports its own figures shows its enqueues with them."""
    global _registered
    if _registered or "prometheus_client" not in sys.modules:
        return
    _registered = True
    sys.modules["prometheus_client"].REGISTRY.register(_Collector())
