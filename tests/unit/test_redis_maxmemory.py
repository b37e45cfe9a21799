"""Redis at its memory limit (maxmemory, noeviction): what an operator reads to find out
why answers (jobs, counts, events, workers, stats, flow runs and their events, the kv
store); a write fails with an error naming maxmemory and the fix. On a standalone server
(a private one: the Function library's flags decide) and on the private cluster (the
scripts' '#!lua' first line decides)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import private_redis
from workhorse import Workhorse
from workhorse.observability import stats

pytest.importorskip("redis")
import redis.asyncio as aioredis

from workhorse.backends.redis import OutOfMemory, RedisBackend


@pytest.fixture(params=["redis", "redis-cluster"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[int]]]:
    """A Redis URL with a fresh prefix, and the ports of its nodes."""
    if request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster")
        ports = [int(a.rsplit(":", 1)[1]) for a in url.removeprefix("redis+cluster://").split(",")]
        yield f"{url}/?prefix=whm", ports
        return
    for srv in private_redis():
        yield f"{srv.url}?prefix=whm", [srv.port]


async def _full(ports: list[int], full: bool) -> None:
    """Every node's maxmemory below the memory it uses (full), or none (0)."""
    for port in ports:
        r = aioredis.Redis(port=port)
        try:
            used = int((await r.info("memory"))["used_memory"])
            await r.config_set("maxmemory", str(used // 2) if full else "0")
        finally:
            await r.aclose()


async def test_reads_answer_and_writes_name_maxmemory(server: tuple[str, list[int]]) -> None:
    url, ports = server
    app = Workhorse(backend=RedisBackend(url), poll_interval=0.05)

    @app.task(name="a", flow="f", entry=True)
    async def a(data: Any) -> Any:
        return data

    @app.task(name="b", flow="f", subscribes=["step:a"])
    async def b(data: Any) -> Any:
        return data

    @app.task(name="plain")
    async def plain(data: Any) -> Any:
        return data

    await app.open()
    try:
        await app.start_worker(concurrency=2)
        done = await app.flows.start("f", 1)
        await done.result(timeout=10)
        job = await app.enqueue("plain", 2)
        await job.result(timeout=10)
        await app.stop_workers()
        running = await app.flows.start("f", 3)  # no worker: its entry step stays queued
        await _full(ports, True)
        try:
            info = await app.flows.get(done.id)
            assert info.state == "completed" and len(info.steps) == 2
            assert {r.id for r in await app.flows.list("f")} == {done.id, running.id}
            assert (await app.flows.get(running.id)).state == "running"
            assert any(e.type == "flow.completed" for e in await app.flows.events(done.id))
            assert (await app.get_job(job.id)).state.value == "completed"  # type: ignore[union-attr]
            assert job.id in [j.id for j in await app.jobs()]
            assert (await app.counts())["default"]["completed"] == 3
            assert await app.events()
            assert isinstance(await app.workers(), list)
            assert isinstance(await app.schedules(), list)
            assert any(t.completed for t in await stats.totals(app.client))
            assert await app.client.backend.kv_scan("flows:run:")
            with pytest.raises(OutOfMemory, match=r"maxmemory.*Raise maxmemory"):
                await app.enqueue("plain", 4)
            with pytest.raises(OutOfMemory, match="maxmemory"):
                await app.flows.start("f", 5)
        finally:
            await _full(ports, False)
    finally:
        await app.close()
        backend = app.client.backend
        assert isinstance(backend, RedisBackend)
        await backend.open()
        await backend.drop()
        await backend.close()
