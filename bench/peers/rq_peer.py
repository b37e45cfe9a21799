"""RQ: synchronous, Redis. Fastest documented settings: ``SimpleWorker`` (no fork per job),
``enqueue_many`` with a pipeline for bulk, ``result_ttl=0`` for fire-and-forget jobs;
``Job.latest_result(timeout=...)`` blocks on the result stream. An RQ worker runs one job
at a time: the concurrency asked for is not available."""

from __future__ import annotations

import time
from importlib import import_module
from typing import Any

from bench.peers.common import NOOP, PING, QUEUE, SLEEP, hit

NAME, BACKEND = "rq", "redis"
SETTINGS = "SimpleWorker (one job at a time), enqueue_many, result_ttl=0 except ping"
CONCURRENCY = 1
_PATHS = {NOOP: f"{__name__}.noop", SLEEP: f"{__name__}.sleep10", PING: f"{__name__}.ping"}


def noop() -> None:
    hit()


def sleep10() -> None:
    time.sleep(0.01)
    hit()


def ping() -> int:
    hit()
    return 1


async def producer(url: str) -> Any:
    conn = import_module("redis").Redis.from_url(url)
    return import_module("rq").Queue(QUEUE, connection=conn)


async def close(h: Any) -> None:
    h.connection.close()


async def enqueue_one(h: Any, task: str) -> None:
    h.enqueue(_PATHS[task], result_ttl=0)


async def enqueue_bulk(h: Any, task: str, k: int) -> None:
    prepare = import_module("rq").Queue.prepare_data
    h.enqueue_many([prepare(_PATHS[task], result_ttl=0) for _ in range(k)])


async def run_and_wait(h: Any) -> None:
    job = h.enqueue(_PATHS[PING])
    if job.latest_result(timeout=30) is None:
        raise TimeoutError("no result from RQ within 30 s")


def work(url: str, concurrency: int) -> None:
    rq = import_module("rq")
    conn = import_module("redis").Redis.from_url(url)
    worker = rq.SimpleWorker([rq.Queue(QUEUE, connection=conn)], connection=conn)
    worker.work(burst=False, logging_level="WARNING")
