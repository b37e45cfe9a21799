"""Is the system able to do its work? The store's reachability and schema, live workers
per queue, and how long the oldest due job has waited: for ``workhorse check`` and
``GET /health`` (Kubernetes probes)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from workhorse.client import Client
from workhorse.job import JobState

STORE_TIMEOUT = 3.0  # seconds a probe waits for the store; kubelet's default timeout is 1-10


@dataclass(slots=True)
class Health:
    store: bool  # reachable, with a schema this workhorse can use
    error: str | None = None
    round_trip_ms: float | None = None
    workers: dict[str, int] = field(default_factory=dict)  # live workers per queue
    queued: dict[str, int] = field(default_factory=dict)  # due jobs waiting per queue
    oldest_age: dict[str, float] = field(default_factory=dict)  # seconds, per queue
    problems: list[str] = field(default_factory=list)  # why it is degraded

    @property
    def status(self) -> str:
        """``down``: the store cannot be used; ``degraded``: work waits with no one to run
        it, or too long; ``ok``."""
        if not self.store:
            return "down"
        return "degraded" if self.problems else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, **asdict(self)}


async def check(client: Client, max_age: float | None = None) -> Health:
    """Look at the store; ``max_age``: a due job older than this many seconds degrades."""
    try:
        async with asyncio.timeout(STORE_TIMEOUT):
            await client.open()  # a store with an old schema refuses here
            started = time.perf_counter()
            now = await client.backend.now()
            round_trip = round((time.perf_counter() - started) * 1000, 2)
            counts = await client.counts()
            workers = await client.workers()
            health = Health(True, round_trip_ms=round_trip)
            for w in workers:
                for queue in w.queues:
                    health.workers[queue] = health.workers.get(queue, 0) + 1
            for queue, by_state in sorted(counts.items()):
                waiting = by_state.get(JobState.QUEUED.value, 0)
                if not waiting:
                    continue
                health.queued[queue] = waiting
                # Newest first: the oldest due job is the last one.
                oldest = await client.jobs(queue=queue, state=JobState.QUEUED, offset=waiting - 1)
                if oldest:
                    health.oldest_age[queue] = round(
                        max(0.0, now - oldest[0].run_at.timestamp()), 3
                    )
    except Exception as exc:  # any failure of the store is what a probe reports
        return Health(
            False, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        )
    for queue, n in health.queued.items():
        if not health.workers.get(queue):
            health.problems.append(f"queue {queue!r} has {n} job(s) waiting and no live worker")
        age = health.oldest_age.get(queue)
        if max_age is not None and age is not None and age > max_age:
            health.problems.append(
                f"queue {queue!r}: the oldest waiting job is {age:.0f}s old (max_age {max_age:g}s)"
            )
    return health
