"""Retention's count rule with the store far away: the sweep's worker reaches Redis through
a proxy that delays every message, while another process, close to the store, finishes
jobs all along. Each queue keeps its newest ``keep_last`` after every sweep; a queue with
no finished job when the sweep began keeps what it finished meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.chaos.proxy import Proxy
from tests.conftest import REDIS_URL, require_service
from tests.contract.support import claim_one, completed, new
from workhorse.backends import Backend, backend_from_url
from workhorse.job import JobState
from workhorse.settings import Settings

DONE = {JobState.COMPLETED}
K = 20
DELAY = 0.02  # each way: Redis on another machine, a slow one


async def finish(backend: Backend, queue: str) -> str:
    lease = await claim_one(backend, queue=queue, worker="near")
    await backend.finish([(lease, completed())])
    return lease.job_id


async def check(near: Backend, done: dict[str, list[str]]) -> None:
    """Each queue lost only its oldest, and kept at least its newest K."""
    for queue, ids in done.items():
        survivors = [await near.get(i) is not None for i in list(ids)]
        assert sum(survivors) >= min(K, len(survivors)), (queue, survivors)
        assert survivors == sorted(survivors), (queue, survivors)


@contextlib.asynccontextmanager
async def stores() -> AsyncIterator[tuple[Backend, Backend, Proxy]]:
    """One store seen from near (direct) and from far (through a proxy that can delay)."""
    require_service("redis", "127.0.0.1", 6379)
    where = urlsplit(REDIS_URL)
    proxy = Proxy(where.hostname or "127.0.0.1", where.port or 6379).start()
    url = f"{REDIS_URL}?prefix=wht{uuid.uuid4().hex[:12]}"
    near = backend_from_url(url)
    far = backend_from_url(url.replace(where.netloc, f"127.0.0.1:{proxy.port}", 1))
    await near.open()
    await far.open()
    try:
        yield near, far, proxy
    finally:
        proxy.delay(0)
        await near.drop()  # type: ignore[attr-defined]
        await far.close()
        await near.close()
        proxy.close()


@pytest.mark.timeout(60)
async def test_redis_sweep_through_a_delayed_link_keeps_each_queues_newest() -> None:
    async with stores() as (near, far, proxy):
        await near.enqueue([new(queue=q) for _ in range(400) for q in ("a", "b")])
        done: dict[str, list[str]] = {"a": [await finish(near, "a") for _ in range(K + 2)]}
        done["b"] = []
        proxy.delay(DELAY)
        sweeping = True

        async def finisher() -> None:
            n = 0
            while sweeping and n < 300:  # fewer than either queue has waiting
                queue = "ab"[n % 4 != 0]  # mostly the queue that had none finished
                done[queue].append(await finish(near, queue))
                n += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(finisher())
        try:
            for _ in range(3):
                await far.purge(states=DONE, keep_last=K, retention=True)
                await check(near, done)
        finally:
            sweeping = False
            await task
        assert len(done["b"]) > K  # the sweeps had finishes to race with


@pytest.mark.timeout(60)
async def test_redis_jobs_finished_after_the_sweeps_first_reads_are_kept() -> None:
    """A queue's first finished jobs land while the sweep's later requests are on the way."""
    async with stores() as (near, far, proxy):
        await near.enqueue([new(queue=q) for _ in range(K) for q in ("a", "b")])
        done = {"a": [await finish(near, "a") for _ in range(K // 2)], "b": []}
        proxy.delay(DELAY)
        before = proxy.sent
        sweep = asyncio.create_task(far.purge(states=DONE, keep_last=K, retention=True))
        while proxy.sent < before + 2 and not sweep.done():
            await asyncio.sleep(0.001)
        done["b"] = [await finish(near, "b") for _ in range(5)]
        assert await sweep == 0  # no queue had more than K finished
        await check(near, done)
        assert [await near.get(i) is not None for i in done["b"]] == [True] * 5


@pytest.mark.timeout(60)
async def test_redis_sweeps_at_the_defaults_delete_nothing_below_the_cap() -> None:
    """The worker's sweep with the default settings, its Redis 1 ms away each way, while
    another process finishes jobs in four queues: fewer than keep_completed ever finish,
    so every record stays."""
    defaults = Settings.load(env={})
    async with stores() as (near, far, proxy):
        queues = ["q0", "q1", "q2", "q3"]
        await near.enqueue([new(queue=q) for _ in range(500) for q in queues])
        proxy.delay(0.001)
        done: list[str] = []
        sweeping = True

        async def finisher() -> None:
            while sweeping and len(done) < 1900:  # fewer than the queues have waiting
                done.append(await finish(near, queues[len(done) % 4]))

        task = asyncio.create_task(finisher())
        try:
            for _ in range(20):
                await far.purge(
                    states=DONE,
                    older_than=defaults.keep_completed_for,
                    keep_last=defaults.keep_completed,
                    retention=True,
                )
        finally:
            sweeping = False
            await task
        assert defaults.keep_completed is not None and len(done) < defaults.keep_completed
        assert [i for i in done if await near.get(i) is None] == []
