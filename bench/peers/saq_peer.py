"""SAQ: asyncio, Redis. Fastest documented settings: ``concurrency`` on the worker, the
default blocking dequeue; ``Queue.apply`` polls for the result, here every POLL_S."""

from __future__ import annotations

import asyncio
from importlib import import_module
from typing import Any

from bench.peers.common import NOOP, PING, POLL_S, QUEUE, SLEEP, hit

NAME, BACKEND = "saq", "redis"
SETTINGS = f"Worker(concurrency=...), apply(poll_interval={POLL_S})"


async def noop(ctx: Any) -> None:
    hit()


async def sleep10(ctx: Any) -> None:
    await asyncio.sleep(0.01)
    hit()


async def ping(ctx: Any) -> int:
    hit()
    return 1


def _queue(url: str) -> Any:
    return import_module("saq").Queue.from_url(url, name=QUEUE)


async def producer(url: str) -> Any:
    q = _queue(url)
    await q.connect()
    return q


async def close(h: Any) -> None:
    await h.disconnect()


async def enqueue_one(h: Any, task: str) -> None:
    await h.enqueue(task)


async def run_and_wait(h: Any) -> None:
    await h.apply(PING, timeout=30, poll_interval=POLL_S)


def work(url: str, concurrency: int) -> None:
    async def main() -> None:
        q = _queue(url)
        await q.connect()
        worker = import_module("saq").Worker(
            q, functions=[(NOOP, noop), (SLEEP, sleep10), (PING, ping)], concurrency=concurrency
        )
        await worker.start()

    asyncio.run(main())
