"""Jobs completed and failed per task and queue, counted in the store so that one read sees
the whole fleet: a running total (for Prometheus) and per-minute buckets (for charts of
the last hour).

Keys (counters, see ``Backend.counter_add``), where ``ID`` names one (queue, task) pair:

    stats:total:KIND:ID          never expires; KIND is completed, failed or enqueued
    stats:min:MINUTE:KIND:ID     MINUTE = the store's epoch seconds // 60; kept two hours;
                                 KIND is also started, or wait_ms (the summed milliseconds
                                 the jobs started that minute waited in their queue)
    stats:pair:ID                (a kv key) ``["queue", "task"]``: lists the pairs

Workers write the kinds they count from their tally; producers (any client that enqueues)
write ``enqueued`` from ``Client.enqueued``, aggregated the same way.

A pair's id is a short hash, so a read of "the last hour per minute" is 60 keys known in
advance, with no scan of counters (which the contract does not offer).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from workhorse.client import Client
    from workhorse.observability.tally import Tally

log = logging.getLogger("workhorse.stats")

KINDS = ("completed", "failed", "enqueued")  # kept in total as well as per minute
MINUTE_KINDS = (*KINDS, "started", "wait_ms")  # per minute only: a wait-time chart
MINUTE_TTL = 2 * 3600.0  # a bucket outlives the hour a chart shows
PAIR_TTL = 7 * 86_400.0  # a pair no worker counted for a week drops out of /metrics
FLUSH_INTERVAL = 1.0


def pair_id(queue: str, task: str) -> str:
    return hashlib.blake2b(f"{queue}\0{task}".encode(), digest_size=8).hexdigest()


def total_key(kind: str, queue: str, task: str) -> str:
    return f"stats:total:{kind}:{pair_id(queue, task)}"


def minute_key(minute: int, kind: str, queue: str, task: str) -> str:
    return f"stats:min:{minute}:{kind}:{pair_id(queue, task)}"


@dataclass(frozen=True, slots=True)
class Total:
    queue: str
    task: str
    completed: int
    failed: int
    enqueued: int = 0


# Running totals by (kind, queue, task): what a writer adds to the store, less what it did.
Figures = Callable[[], dict[tuple[str, str, str], int]]


def worked(tally: Tally) -> Figures:
    """A worker's figures: its tally's finished and started jobs, and their waits."""

    def figures() -> dict[tuple[str, str, str], int]:
        out = {}
        for (queue, task), pair in list(tally.pairs.items()):
            out[("completed", queue, task)] = pair.finished["completed"]
            out[("failed", queue, task)] = pair.finished["failed"]
            out[("started", queue, task)] = pair.started
            out[("wait_ms", queue, task)] = int(pair.wait.total * 1000)
        return out

    return figures


def produced(client: Client) -> Figures:
    """A producer's figures: the jobs its client created."""

    def figures() -> dict[tuple[str, str, str], int]:
        return {("enqueued", q, t): n for (q, t), n in list(client.enqueued.items())}

    return figures


class StatsWriter:
    """Adds this process's figures (a worker's tally, or a producer's enqueues) to the
    store's counters once a second: one write per key touched, not one per job."""

    def __init__(
        self, client: Client, source: Tally | Figures, interval: float = FLUSH_INTERVAL
    ) -> None:
        self.client = client
        self.figures = source if callable(source) else worked(source)
        self.interval = interval
        self._seen: dict[tuple[str, str, str], int] = {}  # (kind, queue, task): counted so far
        self._listed: set[tuple[str, str]] = set()  # pairs whose kv entry is written
        self._listed_at = time.monotonic()
        self._writes: deque[tuple[str, str | None, int]] = deque()  # not yet in the store
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="workhorse-stats")

    async def stop(self) -> None:
        """Write what is left (within 2 s: the store may be gone; counts are best effort).
        The loop is told, not cancelled, so no write is cut off after the store took it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(task, 2)
        except (TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            if threading.main_thread().is_alive():
                log.exception("writing the last job counts to the store failed")
            else:  # at exit without close(): the store's threads are already gone
                log.info("the interpreter is exiting: the last second's job counts are not written")

    async def _loop(self) -> None:
        # Flushes once more after the stop, even a stop that came before the first pass
        # (a script that enqueues and closes within the second).
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            try:
                await self.flush()
            except Exception:
                if self._stopping.is_set():
                    raise
                log.exception("writing job counts to the store failed; will retry")
            if self._stopping.is_set():
                return

    def _new_counts(self) -> list[tuple[str, str, str, int]]:
        """What grew since the last call, marked as seen."""
        out = []
        for key, now in self.figures().items():
            before = self._seen.get(key, 0)
            if now > before:
                self._seen[key] = now
                out.append((*key, now - before))
        return out

    async def flush(self) -> None:
        backend = self.client.backend
        if time.monotonic() - self._listed_at > 86_400:
            self._listed.clear()  # written again, so a long-lived worker keeps them listed
            self._listed_at = time.monotonic()
        new = self._new_counts()
        if new:
            try:
                minute = int(await backend.now()) // 60  # the store's clock, not this machine's
            except BaseException:
                for kind, queue, task, n in new:  # counted again at the next flush
                    self._seen[(kind, queue, task)] -= n
                raise
            # The pairs' entries first, so a pair is listed before its counts grow.
            for _, queue, task, _ in new:
                if (queue, task) not in self._listed:
                    self._listed.add((queue, task))
                    pair = orjson.dumps([queue, task]).decode()
                    self._writes.append((f"stats:pair:{pair_id(queue, task)}", pair, 0))
            for kind, queue, task, n in new:
                if kind in KINDS:
                    self._writes.append((total_key(kind, queue, task), None, n))
                self._writes.append((minute_key(minute, kind, queue, task), None, n))
        # In order, each write (an entry, or the counters up to the next entry in one call)
        # dropped once done: a failure leaves only what is left to do.
        while self._writes:
            key, value, n = self._writes[0]
            if value is not None:
                await backend.kv_set(key, value, PAIR_TTL)
                self._writes.popleft()
                continue
            adds: list[tuple[str, int, float | None]] = []
            for k, v, add in self._writes:
                if v is not None:
                    break
                adds.append((k, add, MINUTE_TTL if k.startswith("stats:min:") else None))
            await backend.counter_add_many(adds)
            for _ in adds:
                self._writes.popleft()


async def pairs(client: Client) -> list[tuple[str, str]]:
    """Every (queue, task) pair a worker counted in the last week."""
    found = await client.backend.kv_scan("stats:pair:")
    out = []
    for raw in found.values():
        with contextlib.suppress(ValueError, TypeError):
            queue, task = orjson.loads(raw)
            out.append((str(queue), str(task)))
    return sorted(out)


async def totals(client: Client) -> list[Total]:
    """Jobs enqueued, completed and failed per (queue, task) since the store's counters
    began."""
    listed = await pairs(client)
    reads: list[tuple[str, int, float | None]] = [
        (total_key(kind, queue, task), 0, None) for queue, task in listed for kind in KINDS
    ]
    n = await client.backend.counter_add_many(reads)  # adding 0 reads (see per_minute)
    k = len(KINDS)
    return [Total(q, t, *n[i * k : i * k + k]) for i, (q, t) in enumerate(listed)]


async def per_minute(
    client: Client, kind: str, queue: str, task: str, minutes: int = 60
) -> list[tuple[int, int]]:
    """``[(minute start, epoch seconds), count]`` for the last ``minutes`` minutes, oldest
    first, the current (partial) minute last."""
    if kind not in MINUTE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(MINUTE_KINDS)}")
    if not 1 <= minutes <= MINUTE_TTL // 60:
        raise ValueError(f"minutes must be 1..{int(MINUTE_TTL // 60)}, got {minutes}")
    backend = client.backend
    now = int(await backend.now()) // 60
    span = range(now - minutes + 1, now + 1)
    # Adding 0 reads a counter (the contract has no counter read).
    n = await backend.counter_add_many(
        [(minute_key(m, kind, queue, task), 0, MINUTE_TTL) for m in span]
    )
    return [(m * 60, v) for m, v in zip(span, n, strict=True)]
