"""Live workers: beat, workers, remove_worker, with TTL expiry."""

from __future__ import annotations

import asyncio

from workhorse.backends import Backend
from workhorse.job import WorkerInfo

from .support import eventually


def info(worker_id: str, **queues: int) -> WorkerInfo:
    return WorkerInfo(worker_id, "host-1", 4242, queues or {"default": 10}, 1_700_000_000.0)


async def test_beat_registers_a_worker(backend: Backend, peer: Backend) -> None:
    before = await backend.now()
    await backend.beat(info("w-a", default=10, priority=2), ttl=30)
    after = await backend.now()

    (seen,) = await peer.workers()
    assert (seen.id, seen.host, seen.pid) == ("w-a", "host-1", 4242)
    assert seen.queues == {"default": 10, "priority": 2}
    assert seen.started_at == 1_700_000_000.0
    assert (seen.active, seen.processed) == (0, 0)
    assert before - 0.01 <= seen.last_seen <= after + 0.01


async def test_beat_again_updates_the_record(backend: Backend) -> None:
    w = info("w-a")
    await backend.beat(w, ttl=30)
    first = (await backend.workers())[0].last_seen
    w.active, w.processed = 3, 120
    await backend.beat(w, ttl=30)

    (seen,) = await backend.workers()
    assert (seen.active, seen.processed) == (3, 120)
    assert seen.last_seen >= first


async def test_several_workers_and_remove(backend: Backend, peer: Backend) -> None:
    await backend.beat(info("w-a"), ttl=30)
    await peer.beat(info("w-b"), ttl=30)
    assert {w.id for w in await backend.workers()} == {"w-a", "w-b"}

    await peer.remove_worker("w-a")
    assert [w.id for w in await backend.workers()] == ["w-b"]
    await backend.remove_worker("w-never-seen")
    assert [w.id for w in await backend.workers()] == ["w-b"]


async def test_a_worker_that_stops_beating_expires(backend: Backend) -> None:
    await backend.beat(info("w-gone"), ttl=0.4)
    await backend.beat(info("w-alive"), ttl=30)
    assert {w.id for w in await backend.workers()} == {"w-gone", "w-alive"}

    async def expired() -> bool:
        return [w.id for w in await backend.workers()] == ["w-alive"]

    await eventually(expired, "the silent worker to drop out after its ttl")


async def test_a_beat_extends_the_ttl(backend: Backend) -> None:
    w = info("w-a")
    await backend.beat(w, ttl=0.3)
    await backend.beat(w, ttl=60)
    await asyncio.sleep(0.45)
    assert [x.id for x in await backend.workers()] == ["w-a"]
