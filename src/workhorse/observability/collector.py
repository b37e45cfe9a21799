"""The store-wide Prometheus figures (``GET /metrics``): depth per queue and state, live
workers per queue, jobs enqueued, completed and failed per queue and task from the
counters the producers and workers keep in the store, and each hook group's lag. One
scrape sees the whole fleet."""

from __future__ import annotations

from typing import Any

from workhorse.client import Client
from workhorse.hooks import Hooks, HookSet
from workhorse.observability import stats


async def store_metrics(client: Client) -> bytes:
    """The exposition text, read from the store now."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    except ImportError:
        raise RuntimeError(
            "/metrics needs prometheus_client: pip install 'workhorse[metrics]'"
        ) from None
    await client.open()
    counts = await client.counts()
    workers = await client.workers()
    totals = await stats.totals(client)
    # Reading lag subscribes nothing: any app's groups are in the store.
    hook_groups = await Hooks(client, HookSet()).status()

    depth = GaugeMetricFamily(
        "workhorse_queue_depth", "Jobs in the store per queue and state", labels=["queue", "state"]
    )
    for queue, by_state in sorted(counts.items()):
        for state, n in sorted(by_state.items()):
            depth.add_metric([queue, state], n)
    alive = GaugeMetricFamily(
        "workhorse_workers_alive", "Live workers consuming each queue", labels=["queue"]
    )
    per_queue: dict[str, int] = {}
    for w in workers:
        for queue in w.queues:
            per_queue[queue] = per_queue.get(queue, 0) + 1
    for queue, n in sorted(per_queue.items()):
        alive.add_metric([queue], n)
    jobs = CounterMetricFamily(
        "workhorse_store_jobs",
        "Jobs finished per queue, task and outcome (completed, failed), counted by all workers",
        labels=["queue", "task", "outcome"],
    )
    enqueued = CounterMetricFamily(
        "workhorse_store_jobs_enqueued",
        "Jobs created per queue and task, counted by all producers (stats setting on)",
        labels=["queue", "task"],
    )
    for t in totals:
        jobs.add_metric([t.queue, t.task, "completed"], t.completed)
        jobs.add_metric([t.queue, t.task, "failed"], t.failed)
        enqueued.add_metric([t.queue, t.task], t.enqueued)

    behind = GaugeMetricFamily(
        "workhorse_hook_events_behind",
        "Events in the log a hook group has not read yet (counting stops at 10000)",
        labels=["group"],
    )
    oldest = GaugeMetricFamily(
        "workhorse_hook_oldest_unread_seconds",
        "Age of the oldest event a hook group has not read (0: none unread)",
        labels=["group"],
    )
    parked = GaugeMetricFamily(
        "workhorse_hook_parked", "Events parked after a hook failed on them", labels=["group"]
    )
    listeners = GaugeMetricFamily(
        "workhorse_hook_listeners", "Live listeners of a hook group", labels=["group"]
    )
    for g in hook_groups:
        behind.add_metric([g.group], g.behind)
        oldest.add_metric([g.group], g.oldest_unread_age or 0.0)
        parked.add_metric([g.group], g.parked)
        listeners.add_metric([g.group], g.listeners)

    class _Snapshot:
        def collect(self) -> Any:
            return [depth, alive, jobs, enqueued, behind, oldest, parked, listeners]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot())
    return bytes(generate_latest(registry))
