"""Celery: Redis broker and result backend. Fastest documented settings (the
"Optimizing" guide and worker options): the threads pool at the asked concurrency,
``-O fair``, no gossip/mingle/heartbeat, rate limits off, results ignored except for the
awaited task; ``group(...).apply_async()`` for bulk."""

from __future__ import annotations

import time
from importlib import import_module
from typing import Any

from bench.peers.common import NOOP, PING, QUEUE, SLEEP, hit

NAME, BACKEND = "celery", "redis"
SETTINGS = (
    "pool=threads, -O fair, without gossip/mingle/heartbeat, worker_disable_rate_limits, "
    "ignore_result except ping"
)
_TASKS: dict[str, Any] = {}


def noop() -> None:
    hit()


def sleep10() -> None:
    time.sleep(0.01)
    hit()


def ping() -> int:
    hit()
    return 1


def _app(url: str) -> Any:
    app = import_module("celery").Celery("bench", broker=url, backend=url)
    app.conf.update(
        task_default_queue=QUEUE,
        worker_disable_rate_limits=True,
        worker_redirect_stdouts=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
    )
    _TASKS[NOOP] = app.task(name=NOOP)(noop)
    _TASKS[SLEEP] = app.task(name=SLEEP)(sleep10)
    _TASKS[PING] = app.task(name=PING, ignore_result=False)(ping)
    return app


async def producer(url: str) -> Any:
    return _app(url)


async def close(h: Any) -> None:
    h.close()


async def enqueue_one(h: Any, task: str) -> None:
    _TASKS[task].apply_async()


async def enqueue_bulk(h: Any, task: str, k: int) -> None:
    sig = _TASKS[task].s()
    import_module("celery").group([sig] * k).apply_async()


async def run_and_wait(h: Any) -> None:
    _TASKS[PING].apply_async().get(timeout=30)


def work(url: str, concurrency: int) -> None:
    app = _app(url)
    worker = app.Worker(
        pool="threads",
        concurrency=concurrency,
        optimization="fair",
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel="WARNING",
        queues=[QUEUE],
    )
    worker.start()
