"""taskiq with taskiq-redis: asyncio, Redis. Fastest documented settings: the stream
broker (reads up to 100 messages a call), ``max_async_tasks`` = concurrency, a Redis result
backend only where a result is awaited (``wait_result`` polls, here every POLL_S)."""

from __future__ import annotations

import asyncio
from importlib import import_module
from typing import Any

from bench.peers.common import NOOP, PING, POLL_S, SLEEP, hit

NAME, BACKEND = "taskiq", "redis"
SETTINGS = f"RedisStreamBroker, max_async_tasks=concurrency, wait_result(check_interval={POLL_S})"
_TASKS: dict[str, Any] = {}


async def noop() -> None:
    hit()


async def sleep10() -> None:
    await asyncio.sleep(0.01)
    hit()


async def ping() -> int:
    hit()
    return 1


def _broker(url: str) -> Any:
    tr = import_module("taskiq_redis")
    broker = tr.RedisStreamBroker(url, consumer_id="0").with_result_backend(
        tr.RedisAsyncResultBackend(url)
    )
    _TASKS[NOOP] = broker.task(task_name=NOOP)(noop)
    _TASKS[SLEEP] = broker.task(task_name=SLEEP)(sleep10)
    _TASKS[PING] = broker.task(task_name=PING)(ping)
    return broker


async def producer(url: str) -> Any:
    broker = _broker(url)
    await broker.startup()
    return broker


async def close(h: Any) -> None:
    await h.shutdown()


async def enqueue_one(h: Any, task: str) -> None:
    await _TASKS[task].kiq()


async def run_and_wait(h: Any) -> None:
    sent = await _TASKS[PING].kiq()
    await sent.wait_result(check_interval=POLL_S, timeout=30)


def work(url: str, concurrency: int) -> None:
    async def main() -> None:
        broker = _broker(url)
        broker.is_worker_process = True
        await broker.startup()
        receiver = import_module("taskiq.receiver").Receiver(
            broker, max_async_tasks=concurrency, run_startup=False
        )
        await receiver.listen(asyncio.Event())

    asyncio.run(main())
