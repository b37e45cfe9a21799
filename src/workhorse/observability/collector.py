"""The store-wide Prometheus figures (``GET /metrics``): depth per queue and state, live
workers per queue, and jobs completed and failed per queue and task from the counters the
workers keep in the store. One scrape sees the whole fleet."""

from __future__ import annotations

from typing import Any

from workhorse.client import Client
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
    for t in totals:
        jobs.add_metric([t.queue, t.task, "completed"], t.completed)
        jobs.add_metric([t.queue, t.task, "failed"], t.failed)

    class _Snapshot:
        def collect(self) -> Any:
            return [depth, alive, jobs]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot())
    return bytes(generate_latest(registry))
