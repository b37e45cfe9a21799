"""Procrastinate: asyncio, PostgreSQL. Fastest documented settings: the psycopg connector,
LISTEN/NOTIFY on (the default), ``concurrency`` on the worker, ``batch_defer_async`` for
bulk. It has no result store: run-and-await polls the job's status every POLL_S."""

from __future__ import annotations

import asyncio
from importlib import import_module
from typing import Any

from bench.peers.common import NOOP, PING, POLL_S, QUEUE, SLEEP, hit

NAME, BACKEND = "procrastinate", "postgres"
SETTINGS = f"PsycopgConnector, listen_notify=True, concurrency=..., status polled every {POLL_S}s"
_TASKS: dict[str, Any] = {}


async def noop() -> None:
    hit()


async def sleep10() -> None:
    await asyncio.sleep(0.01)
    hit()


async def ping() -> int:
    hit()
    return 1


def _app(url: str) -> Any:
    p = import_module("procrastinate")
    app = p.App(connector=p.PsycopgConnector(conninfo=url))
    _TASKS[NOOP] = app.task(name=NOOP, queue=QUEUE)(noop)
    _TASKS[SLEEP] = app.task(name=SLEEP, queue=QUEUE)(sleep10)
    _TASKS[PING] = app.task(name=PING, queue=QUEUE)(ping)
    return app


async def setup(url: str) -> None:
    async with _app(url).open_async() as app:
        await app.schema_manager.apply_schema_async()


async def producer(url: str) -> Any:
    app = _app(url)
    await app.open_async()
    return app


async def close(h: Any) -> None:
    await h.close_async()


async def enqueue_one(h: Any, task: str) -> None:
    await _TASKS[task].defer_async()


async def enqueue_bulk(h: Any, task: str, k: int) -> None:
    await _TASKS[task].batch_defer_async(*([{}] * k))


async def run_and_wait(h: Any) -> None:
    job_id = await _TASKS[PING].defer_async()
    succeeded = import_module("procrastinate.jobs").Status.SUCCEEDED
    while await h.job_manager.get_job_status_async(job_id) != succeeded:
        await asyncio.sleep(POLL_S)


def work(url: str, concurrency: int) -> None:
    async def main() -> None:
        async with _app(url).open_async() as app:
            await app.run_worker_async(
                queues=[QUEUE], concurrency=concurrency, install_signal_handlers=False
            )

    asyncio.run(main())
