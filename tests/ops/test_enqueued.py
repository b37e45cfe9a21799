""" "Jobs enqueued": counted by the client that enqueues, added to the store's counters
once a second (so the store-wide /metrics shows every producer's), and shown in the
producer process's own Prometheus registry."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from workhorse.observability import stats
from workhorse.observability.routes import router

from .ops_app import make
from .procs import HERE
from .test_metrics import samples, value

# Another process enqueues: 4 one by one, 5 in one call, a singleton twice (one created,
# one duplicate), 2 on another queue; then it exits, closing its app as a script does.
PRODUCER = """
import asyncio, sys
from ops_app import make

async def single():
    return None

async def main(url):
    app = make(url=url)
    app.add_task(single, singleton=True)
    async with app:
        for n in range(4):
            await app.enqueue("ok", {"n": n})
        await app.enqueue_many("ok", [{"n": n} for n in range(5)])
        await app.enqueue("single")
        await app.enqueue("single")
        await app.enqueue("boom", queue="other")
        await app.enqueue("boom", queue="other")

asyncio.run(main(sys.argv[1]))
"""


async def produce(script: str, url: str) -> bytes:
    """Run a producer script in another process on ``url``; its stderr once it exited 0."""
    env = {"PYTHONPATH": ":".join([str(HERE), *sys.path])}
    producer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, url, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(producer.communicate(), 30)
    assert producer.returncode == 0, stderr.decode()
    return stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
async def test_store_metrics_count_what_another_process_enqueued(kind: str, tmp_path: Path) -> None:
    from tests.acceptance.harness import drop_store
    from tests.conftest import backend_url

    url = backend_url(kind, tmp_path)
    try:
        await produce(PRODUCER, url)
        reader = make(url=url)
        api = FastAPI()
        api.include_router(router(reader))
        transport = httpx.ASGITransport(app=api)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                response = await http.get("/metrics")
            minutes = await stats.per_minute(reader.client, "enqueued", "default", "ok", 5)
        finally:
            await reader.close()
    finally:
        await drop_store(url)
    assert response.status_code == 200, response.text
    got = samples(response.text)
    enqueued = "workhorse_store_jobs_enqueued_total"
    assert value(got, enqueued, queue="default", task="ok") == 9
    assert value(got, enqueued, queue="default", task="single") == 1  # the duplicate: not
    assert value(got, enqueued, queue="other", task="boom") == 2
    assert value(got, "workhorse_queue_depth", queue="default", state="queued") == 10
    assert sum(n for _, n in minutes) == 9  # the per-minute buckets hold the same jobs


# A sync script that never closes its app: the facade closes it at exit, before the
# interpreter's executors are gone, so the last second's counts still reach the store.
SYNC_PRODUCER = """
import sys
from ops_app import make

app = make(url=sys.argv[1])
for n in range(3):
    app.sync.enqueue("ok", {"n": n})
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_sync_script_that_never_closes_still_writes_its_counts(
    kind: str, tmp_path: Path
) -> None:
    from tests.acceptance.harness import drop_store
    from tests.conftest import backend_url

    url = backend_url(kind, tmp_path)
    try:
        stderr = await produce(SYNC_PRODUCER, url)
        assert b"not written" not in stderr, stderr.decode()
        reader = make(url=url)
        try:
            await reader.open()
            totals = await stats.totals(reader.client)
        finally:
            await reader.close()
    finally:
        await drop_store(url)
    assert [t.enqueued for t in totals if (t.queue, t.task) == ("default", "ok")] == [3], totals


async def test_a_producer_writes_its_counts_once_a_second_not_per_enqueue() -> None:
    app = make(url="memory://")
    writes: list[list[str]] = []
    try:
        await app.open()
        backend = app.backend
        add_many = backend.counter_add_many

        async def counted(items: Sequence[tuple[str, int, float | None]]) -> list[int]:
            writes.append([key for key, _, _ in items])
            return await add_many(items)

        backend.counter_add_many = counted  # type: ignore[method-assign]
        for n in range(200):
            await app.enqueue("ok", {"n": n})
        assert writes == []  # nothing written by the enqueues themselves
    finally:
        await app.close()  # the last counts are written at close
    # One total and one minute bucket for the pair, whatever the number of enqueues, in
    # one call.
    assert [sorted(k.split(":")[1] for k in keys) for keys in writes] == [["min", "total"]]


async def test_no_counts_in_the_store_with_stats_off() -> None:
    app = make(url="memory://", stats=False)
    async with app:
        await app.enqueue("ok", {"n": 1})
        assert app.client.enqueued == {("default", "ok"): 1}  # still in the process's figures
    await app.open()  # the memory store keeps its contents over a close
    try:
        assert await stats.totals(app.client) == []
    finally:
        await app.close()


async def test_the_producer_process_registry_shows_its_enqueues() -> None:
    import prometheus_client

    def enqueued() -> float:
        text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
        return value(samples(text), "workhorse_jobs_enqueued_total", queue="reg", task="ok")

    before = enqueued()
    app = make(url="memory://")
    async with app:
        await app.enqueue_many("ok", [{"n": n} for n in range(3)], queue="reg")
        await app.enqueue("ok", {"n": 3}, queue="reg")
        assert enqueued() - before == 4
