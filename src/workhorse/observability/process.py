"""A worker process's own Prometheus figures, served on an optional port
(``--metrics-port``, ``WORKHORSE_METRICS_PORT``), built from its tally at scrape time.

Several worker processes on one host: set ``PROMETHEUS_MULTIPROC_DIR`` to a directory
they share. Each process writes its tally there once a second, and the process that binds
the port serves the sum of all of them (leases held: live processes only); the others
leave the port to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from workhorse.errors import ConfigError
from workhorse.observability import produced
from workhorse.observability.tally import BUCKETS, Tally

log = logging.getLogger("workhorse.metrics")

WRITE_INTERVAL = 1.0


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "worker metrics need prometheus_client: pip install 'workhorse[metrics]', or "
            "unset metrics_port (WORKHORSE_METRICS_PORT)"
        ) from None
    return prometheus_client


def shared_dir() -> Path | None:
    raw = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(raw) if raw else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Sums:
    """Tallies (as JSON) added up."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], dict[str, Any]] = {}
        self.leases: dict[str, int] = {}
        self.recoveries = 0
        self.cron: dict[tuple[str, str], int] = {}
        self.enqueued: dict[tuple[str, str], int] = {}

    def add(self, snap: dict[str, Any], live: bool) -> None:
        for p in snap["pairs"]:
            mine = self.pairs.setdefault(
                (p["queue"], p["task"]),
                {
                    "started": 0,
                    "stalled": 0,
                    "finished": {},
                    "run": ([0] * (len(BUCKETS) + 1), [0.0]),
                    "wait": ([0] * (len(BUCKETS) + 1), [0.0]),
                },
            )
            mine["started"] += p["started"]
            mine["stalled"] += p["stalled"]
            for outcome, n in p["finished"].items():
                mine["finished"][outcome] = mine["finished"].get(outcome, 0) + n
            for name in ("run", "wait"):
                counts, total = mine[name]
                for i, n in enumerate(p[name]["counts"]):
                    counts[i] += n
                total[0] += p[name]["sum"]
        if live:
            for queue, n in snap["leases"].items():
                self.leases[queue] = self.leases.get(queue, 0) + n
        self.recoveries += snap["recoveries"]
        for c in snap["cron"]:
            key = (c["schedule"], c["task"])
            self.cron[key] = self.cron.get(key, 0) + c["n"]
        for e in snap.get("enqueued", ()):  # absent from an older version's file
            key = (e["queue"], e["task"])
            self.enqueued[key] = self.enqueued.get(key, 0) + e["n"]


class Exporter:
    """The Prometheus collector over this process's tally (or every process's)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self._server: Any = None
        self._writer: asyncio.Task[None] | None = None
        self.dir = shared_dir()

    def sums(self) -> _Sums:
        sums = _Sums()
        if self.dir is None:
            sums.add(self.snapshot(), live=True)
            return sums
        self.write()  # this process's newest figures, not those of a second ago
        for path in self.dir.glob("workhorse-*.json"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.stem.removeprefix("workhorse-"))
                sums.add(orjson.loads(path.read_bytes()), live=_alive(pid))
        return sums

    def snapshot(self) -> dict[str, Any]:
        """This process's figures: its workers' tally and its producers' enqueues."""
        snap = self.tally.to_json()
        snap["enqueued"] = [
            {"queue": q, "task": t, "n": n} for (q, t), n in produced.enqueued().items()
        ]
        return snap

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        s = self.sums()
        labels = ["queue", "task"]
        started = CounterMetricFamily("workhorse_jobs_started", "Attempts started", labels=labels)
        finished = CounterMetricFamily(
            "workhorse_jobs_finished",
            "Attempts ended, by outcome (completed, failed, retried, cancelled)",
            labels=[*labels, "outcome"],
        )
        stalled = CounterMetricFamily(
            "workhorse_jobs_stalled",
            "Jobs whose lease expired (their worker died), reclaimed by these workers",
            labels=labels,
        )
        run = HistogramMetricFamily(
            "workhorse_job_run_seconds", "Seconds an attempt ran, start to outcome", labels=labels
        )
        wait = HistogramMetricFamily(
            "workhorse_job_wait_seconds",
            "Seconds from a job's enqueue to the start of its attempt (a delay included)",
            labels=labels,
        )
        for (queue, task), p in sorted(s.pairs.items()):
            started.add_metric([queue, task], p["started"])
            stalled.add_metric([queue, task], p["stalled"])
            for outcome, n in sorted(p["finished"].items()):
                finished.add_metric([queue, task, outcome], n)
            for family, name in ((run, "run"), (wait, "wait")):
                counts, total = p[name]
                cumulative, buckets = 0, []
                for bound, n in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                    cumulative += n
                    buckets.append((bound, cumulative))
                family.add_metric([queue, task], buckets, total[0])
        leases = GaugeMetricFamily(
            "workhorse_leases_held", "Jobs held (running) now", labels=["queue"]
        )
        for queue, n in sorted(s.leases.items()):
            leases.add_metric([queue], n)
        recoveries = CounterMetricFamily(
            "workhorse_lease_recoveries", "Expired leases these workers put back"
        )
        recoveries.add_metric([], s.recoveries)
        cron = CounterMetricFamily(
            "workhorse_cron_ticks", "Schedule ticks fired", labels=["schedule", "task"]
        )
        for (schedule, task), n in sorted(s.cron.items()):
            cron.add_metric([schedule, task], n)
        enqueued = CounterMetricFamily("workhorse_jobs_enqueued", produced.HELP, labels=labels)
        for (queue, task), n in sorted(s.enqueued.items()):
            enqueued.add_metric([queue, task], n)
        yield from (started, finished, stalled, run, wait, leases, recoveries, cron, enqueued)

    def text(self) -> bytes:
        """The exposition text, as a scrape of the port gets it."""
        pc = _prometheus()
        registry = pc.CollectorRegistry(auto_describe=False)
        registry.register(self)
        return bytes(pc.generate_latest(registry))

    def write(self) -> None:
        if self.dir is None:
            return
        path = self.dir / f"workhorse-{os.getpid()}.json"
        temp = path.with_suffix(".tmp")
        temp.write_bytes(orjson.dumps(self.snapshot()))
        temp.replace(path)  # a reader never sees half a file

    async def _write_loop(self) -> None:
        while True:
            await asyncio.sleep(WRITE_INTERVAL)
            try:
                await asyncio.to_thread(self.write)
            except OSError:
                log.exception("could not write metrics to %s", self.dir)

    async def serve(self, port: int, host: str = "0.0.0.0") -> bool:
        """Serve on ``port`` (a thread); False if another process has it."""
        pc = _prometheus()
        if self.dir is not None:
            self._writer = asyncio.create_task(self._write_loop(), name="workhorse-metrics")
        registry = pc.CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            served = await asyncio.to_thread(pc.start_http_server, port, host, registry)
        except OSError as exc:
            if self.dir is not None:
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

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            with contextlib.suppress(OSError):
                self.write()  # the last figures, kept after this process exits
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
