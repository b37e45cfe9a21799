"""Concurrency and rate limits across every worker, kept in the store.

Concurrency N per key is N slot keys (``limit:KEY:i``), each taken with set_if_absent and a
lease-long TTL, refreshed with the job's lease and deleted (owner-checked) when the attempt
ends, so a killed worker's slot frees itself when its lease would have expired.
A rate is a fixed-window counter per key (``rate:KEY:WINDOW``) in the store.

A job that meets a full limit goes back to its queue with a short delay and its attempt
refunded: waiting for a limit is never a failure."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workhorse.backends.base import Backend
    from workhorse.job import Lease
    from workhorse.task import Task

BUSY_DELAY = 0.25  # base wait before a job blocked by a concurrency limit is tried again


@dataclass(slots=True)
class Slot:
    key: str
    owner: str
    ttl: float


class Limiter:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def acquire(
        self, task: Task[Any, Any], value: Any, lease: Lease
    ) -> tuple[Slot | None, float | None]:
        """Take what the job needs. Returns (slot, None) to go ahead, or (None, delay) to
        come back after ``delay`` seconds."""
        opts = task.defaults
        key = task.limit_key(value)
        slot = None
        if opts.concurrency is not None:
            for i in range(opts.concurrency):
                candidate = Slot(f"limit:{key}:{i}", lease.job_id, lease.lease)
                if await self.backend.set_if_absent(candidate.key, candidate.owner, lease.lease):
                    slot = candidate
                    break
            else:
                return None, BUSY_DELAY * (1 + random.random())
        if opts.rate is not None:
            now = await self.backend.now()
            period = opts.rate.period
            window = math.floor(now / period)
            used = await self.backend.counter_add(f"rate:{key}:{window}", 1, period * 2)
            if used > opts.rate.limit:
                if slot is not None:
                    await self.release(slot)
                # Come back when the window turns, spread a little so waiters do not stampede.
                wait = (window + 1) * period - now
                return None, wait + random.uniform(0, min(period, 1.0) * 0.1)
        return slot, None

    async def renew(self, slots: list[Slot]) -> None:
        for slot in slots:
            await self.backend.kv_set(slot.key, slot.owner, slot.ttl)

    async def release(self, slot: Slot) -> None:
        await self.backend.kv_delete(slot.key, slot.owner)
