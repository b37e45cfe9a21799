"""arq: asyncio, Redis. Fastest documented settings: ``max_jobs`` = concurrency, a short
``poll_delay`` (the worker sleeps that long between reads; default 0.5 s), results not kept
for fire-and-forget tasks (``keep_result=0``), signal handling off (the harness owns it)."""

from __future__ import annotations

import asyncio
from importlib import import_module
from typing import Any

from bench.peers.common import NOOP, PING, POLL_S, SLEEP, hit

NAME, BACKEND = "arq", "redis"
SETTINGS = f"max_jobs=concurrency, poll_delay={POLL_S}, keep_result=0 except ping"


async def noop(ctx: Any) -> None:
    hit()


async def sleep10(ctx: Any) -> None:
    await asyncio.sleep(0.01)
    hit()


async def ping(ctx: Any) -> int:
    hit()
    return 1


async def producer(url: str) -> Any:
    arq = import_module("arq")
    return await arq.create_pool(import_module("arq.connections").RedisSettings.from_dsn(url))


async def close(h: Any) -> None:
    await h.aclose()


async def enqueue_one(h: Any, task: str) -> None:
    await h.enqueue_job(task)


async def run_and_wait(h: Any) -> None:
    job = await h.enqueue_job(PING)
    await job.result(timeout=30, poll_delay=POLL_S)


def work(url: str, concurrency: int) -> None:
    async def main() -> None:
        # inside the loop: arq's Worker keeps the loop current at construction
        arq = import_module("arq")
        func = import_module("arq.worker").func
        worker = arq.Worker(
            functions=[
                func(noop, name=NOOP, keep_result=0),
                func(sleep10, name=SLEEP, keep_result=0),
                func(ping, name=PING),
            ],
            redis_settings=import_module("arq.connections").RedisSettings.from_dsn(url),
            max_jobs=concurrency,
            poll_delay=POLL_S,
            handle_signals=False,
        )
        await worker.main()

    asyncio.run(main())
