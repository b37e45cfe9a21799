"""A worker process's own Prometheus figures, counted from the in-process event bus and
served on an optional port (``--metrics-port``, ``WORKHORSE_METRICS_PORT``).

Several worker processes on one host: set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory
shared by them, see prometheus_client's multiprocess mode); the process that binds the port
then serves the sum of all of them, and the others leave the port to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from workhorse.errors import ConfigError
from workhorse.job import Event

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from workhorse.client import Client

log = logging.getLogger("workhorse.metrics")

# Seconds: from a no-op's milliseconds to a batch job's quarter hour.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_LABELS = ("queue", "task")
_OUTCOMES = {
    "job.completed": "completed",
    "job.failed": "failed",
    "job.retrying": "retried",
    "job.cancelled": "cancelled",
}


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "worker metrics need prometheus_client: pip install 'workhorse[metrics]', or "
            "unset metrics_port (WORKHORSE_METRICS_PORT)"
        ) from None
    return prometheus_client


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class WorkerMetrics:
    """The figures of the workers in this process. ``start()`` subscribes to the bus."""

    def __init__(self, client: Client) -> None:
        pc = _prometheus()
        self.client = client
        self.registry: CollectorRegistry = pc.CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = _LABELS) -> Any:
            return pc.Counter(name, doc, labels, registry=r)

        self.started = counter("workhorse_jobs_started", "Attempts started")
        self.finished = counter(
            "workhorse_jobs_finished",
            "Attempts ended, by outcome (completed, failed, retried, cancelled)",
            (*_LABELS, "outcome"),
        )
        self.stalled = counter(
            "workhorse_jobs_stalled",
            "Jobs whose lease expired (their worker died), reclaimed by this process",
        )
        self.run_time = pc.Histogram(
            "workhorse_job_run_seconds",
            "Seconds an attempt ran, start to outcome",
            _LABELS,
            buckets=BUCKETS,
            registry=r,
        )
        self.wait = pc.Histogram(
            "workhorse_job_wait_seconds",
            "Seconds from a job's enqueue to the start of its attempt (a delay included)",
            _LABELS,
            buckets=BUCKETS,
            registry=r,
        )
        self.leases = pc.Gauge(
            "workhorse_leases_held",
            "Jobs this process holds a lease on (running)",
            ("queue",),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.recoveries = counter(
            "workhorse_lease_recoveries", "Expired leases this process put back", ()
        )
        self.cron_ticks = counter(
            "workhorse_cron_ticks", "Schedule ticks this process fired", ("schedule", "task")
        )
        self._server: Any = None
        self._starts: dict[str, tuple[float, str]] = {}  # job id: (monotonic start, queue)
        self._handlers = (
            ("job.started", self._started),
            *((kind, self._finished) for kind in _OUTCOMES),
            ("job.queued", self._released),
            ("job.stalled", self._stalled),
            ("cron.fired", self._cron),
        )

    def start(self) -> None:
        for kind, handler in self._handlers:
            self.client.bus.on(kind, handler)

    def stop(self) -> None:
        for kind, handler in self._handlers:
            self.client.bus.off(kind, handler)

    def _started(self, event: Event) -> None:
        queue, task = event.queue or "", event.task or ""
        self.started.labels(queue, task).inc()
        self.leases.labels(queue).inc()
        queued_at = event.data.get("created_at")
        if isinstance(queued_at, float | int):
            self.wait.labels(queue, task).observe(max(0.0, event.at - queued_at))
        if event.job_id is not None:
            self._starts[event.job_id] = (time.monotonic(), queue)

    def _finished(self, event: Event) -> None:
        queue, task = event.queue or "", event.task or ""
        self.finished.labels(queue, task, _OUTCOMES[event.type]).inc()
        began = self._starts.pop(event.job_id or "", None)
        if began is not None:
            self.leases.labels(began[1]).dec()
            self.run_time.labels(queue, task).observe(time.monotonic() - began[0])

    def _released(self, event: Event) -> None:
        """Put back in its queue without an outcome (a shutdown, an unknown task); the
        producer's own enqueues come here too, and are not in ``_starts``."""
        began = self._starts.pop(event.job_id or "", None)
        if began is not None:
            self.leases.labels(began[1]).dec()

    async def _stalled(self, event: Event) -> None:
        self.recoveries.inc()
        # The reclaim names only the job: its record gives the labels (stalls are rare).
        job = None if event.job_id is None else await self.client.get_job(event.job_id)
        self.stalled.labels(*((job.queue, job.task) if job else ("", ""))).inc()

    def _cron(self, event: Event) -> None:
        self.cron_ticks.labels(str(event.data.get("schedule", "")), event.task or "").inc()

    def dropped(self, job_id: str) -> None:
        """A job left this worker without an outcome event (its lease was lost)."""
        began = self._starts.pop(job_id, None)
        if began is not None:
            self.leases.labels(began[1]).dec()

    def text(self) -> bytes:
        """The exposition text, as a scrape of the port gets it."""
        pc = _prometheus()
        return bytes(pc.generate_latest(self.exported()))

    def exported(self) -> CollectorRegistry:
        if not multiprocess():
            return self.registry
        _prometheus()
        from prometheus_client import CollectorRegistry as Registry
        from prometheus_client import multiprocess as mp

        merged = Registry()
        mp.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged

    async def serve(self, port: int, host: str = "0.0.0.0") -> bool:
        """Serve the figures on ``port`` (a thread); False if another process has it."""
        pc = _prometheus()
        try:
            served = await asyncio.to_thread(pc.start_http_server, port, host, self.exported())
        except OSError as exc:
            if multiprocess():
                log.info("metrics port %d is served by another worker process", port)
            else:
                log.error(
                    "metrics port %d: %s; give each worker process its own port, or set "
                    "PROMETHEUS_MULTIPROC_DIR so one process serves them all",
                    port,
                    exc,
                )
            return False
        self._server = served[0]
        log.info("worker metrics on http://%s:%d/metrics", host, port)
        return True

    def close(self) -> None:
        self.stop()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
