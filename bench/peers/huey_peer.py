"""Huey: threads, Redis. Fastest documented settings: ``RedisHuey(blocking=True)`` (BRPOP,
no polling), thread workers at the asked concurrency, ``notify_result=True`` so a blocking
``Result.get`` wakes on a push instead of polling, no periodic-task scheduler."""

from __future__ import annotations

import time
from importlib import import_module
from typing import Any

from bench.peers.common import NOOP, PING, SLEEP, hit

NAME, BACKEND = "huey", "redis"
SETTINGS = "RedisHuey(blocking=True, notify_result=True), workers=concurrency, worker_type=thread"
_TASKS: dict[str, Any] = {}


def noop() -> None:
    hit()


def sleep10() -> None:
    time.sleep(0.01)
    hit()


def ping() -> int:
    hit()
    return 1


def _huey(url: str) -> Any:
    huey = import_module("huey").RedisHuey("bench", url=url, blocking=True, notify_result=True)
    _TASKS[NOOP] = huey.task(name=NOOP)(noop)
    _TASKS[SLEEP] = huey.task(name=SLEEP)(sleep10)
    _TASKS[PING] = huey.task(name=PING)(ping)
    return huey


async def producer(url: str) -> Any:
    return _huey(url)


async def close(h: Any) -> None:
    h.storage.conn.close()


async def enqueue_one(h: Any, task: str) -> None:
    _TASKS[task]()


async def run_and_wait(h: Any) -> None:
    _TASKS[PING]().get(blocking=True, timeout=30)


def work(url: str, concurrency: int) -> None:
    consumer = _huey(url).create_consumer(
        workers=concurrency, worker_type="thread", periodic=False, check_worker_health=False
    )
    consumer.run()
