"""Dramatiq: threads, Redis. Fastest documented settings: ``worker_threads`` =
concurrency, default prefetch; results (the Results middleware, blocking get) only for the
task whose result is awaited."""

from __future__ import annotations

import threading
import time
from importlib import import_module
from typing import Any

from bench.peers.common import NOOP, PING, QUEUE, SLEEP, hit

NAME, BACKEND = "dramatiq", "redis"
SETTINGS = "Worker(worker_threads=concurrency), store_results only on ping"
_ACTORS: dict[str, Any] = {}


def noop() -> None:
    hit()


def sleep10() -> None:
    time.sleep(0.01)
    hit()


def ping() -> int:
    hit()
    return 1


def _broker(url: str) -> Any:
    dramatiq = import_module("dramatiq")
    broker = import_module("dramatiq.brokers.redis").RedisBroker(url=url)
    results = import_module("dramatiq.results")
    backend = import_module("dramatiq.results.backends").RedisBackend(url=url)
    broker.add_middleware(results.Results(backend=backend))
    dramatiq.set_broker(broker)
    actor = dramatiq.actor
    _ACTORS[NOOP] = actor(noop, actor_name=NOOP, queue_name=QUEUE, max_retries=0)
    _ACTORS[SLEEP] = actor(sleep10, actor_name=SLEEP, queue_name=QUEUE, max_retries=0)
    _ACTORS[PING] = actor(
        ping, actor_name=PING, queue_name=QUEUE, max_retries=0, store_results=True
    )
    return broker


async def producer(url: str) -> Any:
    return _broker(url)


async def close(h: Any) -> None:
    h.close()


async def enqueue_one(h: Any, task: str) -> None:
    _ACTORS[task].send()


async def run_and_wait(h: Any) -> None:
    _ACTORS[PING].send().get_result(block=True, timeout=30_000)


def work(url: str, concurrency: int) -> None:
    broker = _broker(url)
    worker = import_module("dramatiq").Worker(broker, worker_threads=concurrency)
    worker.start()
    threading.Event().wait()  # the harness's watcher ends the process
