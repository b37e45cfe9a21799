"""Concurrency and rate limits across every worker, kept in the store.

Concurrency N per key is N slot keys (``limit:KEY:i``), each taken with set_if_absent and a
lease-long TTL by one attempt, whose lease token it holds. Only that attempt renews it (with
its lease, in the same renewal, and only while the slot still holds the token) and deletes
it, so a killed or hung worker's slot frees itself when its lease expires, and a slot
taken over after that is never taken back.
A rate is a fixed-window counter per key (``rate:KEY:WINDOW``) in the store.

A job that meets a full limit goes back to its queue with a short delay and its attempt
refunded: waiting for a limit is never a failure."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
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
    owner: str  # the attempt's lease token
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
                candidate = Slot(f"limit:{key}:{i}", lease.token, lease.lease)
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

    async def release(self, slot: Slot) -> None:
        await self.backend.kv_delete(slot.key, slot.owner)


async def extend(backend: Backend, slots: Sequence[Slot]) -> list[Slot]:
    """Renew ``slots`` on ``backend`` while their owners still hold them; returns the ones
    that were no longer theirs."""
    by_ttl: dict[float, dict[str, str]] = {}
    for slot in slots:
        by_ttl.setdefault(slot.ttl, {})[slot.key] = slot.owner
    ours: set[str] = set()
    for ttl, held in by_ttl.items():
        ours |= await backend.kv_extend(held, ttl)
    return [slot for slot in slots if slot.key not in ours]
