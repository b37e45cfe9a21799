"""Bad input in the store: a record that cannot be decoded, written straight into the store
with the backend's own raw connection (sqlite3, redis-py, psycopg), is quarantined as failed
with its raw bytes kept in the error; claim, get, query, counts and the worker carry on."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from tests.conftest import BACKENDS, POSTGRES_URL, REDIS_URL
from workhorse import JobState, Workhorse
from workhorse.backends import Backend
from workhorse.job import Job

from .support import LONG, claim_one, completed, enqueue_one, must_get, new, settled_log

BAD = b'\xff{"not": json'  # neither UTF-8 nor JSON


@pytest.fixture(
    params=[k for k in ("sqlite", "redis", "postgres", "redis-cluster") if k in BACKENDS]
)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Only the durable backends: they hold bytes that something else can write."""
    pytest.importorskip(f"workhorse.backends.{request.param.removesuffix('-cluster')}")
    return str(request.param)


def only(kind: str) -> list[Any]:
    """One backend's own kind of damage, still subject to WORKHORSE_TEST_BACKENDS."""
    skip = pytest.mark.skipif(kind not in BACKENDS, reason=f"{kind} not in the tested backends")
    return [pytest.param(kind, marks=skip)]


class RawStore:
    """The store as another program sees it: no workhorse in between."""

    def __init__(self, backend: Backend, kind: str) -> None:
        self.backend, self.kind = backend, kind
        self._redis: aioredis.Redis | RedisCluster | None = None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def _redis_key(self, job_id: str, queue: str) -> str:
        return f"{{{self.backend.prefix}:{queue}}}:j:{job_id}"  # type: ignore[attr-defined]

    def _conn(self) -> aioredis.Redis | RedisCluster:
        if self._redis is None:
            if self.kind == "redis-cluster":
                host, port = self.backend._cluster.nodes[0]  # type: ignore[attr-defined]
                self._redis = RedisCluster(host=host, port=port)
            else:
                self._redis = aioredis.from_url(REDIS_URL)
        return self._redis

    async def put(self, job_id: str, field: str, value: bytes, queue: str = "q") -> None:
        """Overwrite ``field`` (data or result) of a job with raw bytes."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.backend.path)) as db:  # type: ignore[attr-defined]
                db.execute(f"UPDATE wh_jobs SET {field} = ? WHERE id = ?", (value, job_id))
                db.commit()
        elif self.kind.startswith("redis"):
            name = {"data": "d", "result": "res"}[field]
            await self._conn().hset(self._redis_key(job_id, queue), name, value)
        else:
            schema = self.backend.schema  # type: ignore[attr-defined]
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as c:
                await c.execute(
                    f'UPDATE "{schema}".jobs SET {field} = %s WHERE id = %s', (value, job_id)
                )

    async def drop_fields(self, job_id: str, *fields: str, queue: str = "q") -> None:
        assert self.kind.startswith("redis")
        await self._conn().hdel(self._redis_key(job_id, queue), *fields)

    async def fields(self, job_id: str, queue: str = "q") -> dict[bytes, bytes]:
        assert self.kind.startswith("redis")
        found = await self._conn().hgetall(self._redis_key(job_id, queue))
        return {bytes(k): bytes(v) for k, v in found.items()}  # type: ignore[arg-type]


@pytest.fixture
async def raw(backend: Backend, backend_kind: str) -> AsyncIterator[RawStore]:
    store = RawStore(backend, backend_kind)
    try:
        yield store
    finally:
        await store.close()


def assert_quarantined(job: Job, field: str, value: bytes) -> dict[str, Any]:
    assert job.state is JobState.FAILED
    assert job.error is not None
    error = job.error
    assert error["type"] == "Quarantined"
    assert error["message"].startswith(f"record could not be decoded: {field}: ")
    assert base64.b64decode(error["raw"][field]) == value
    assert error["raw_size"][field] == len(value)
    return error


async def failed_events(backend: Backend, job_id: str) -> int:
    # Settled: an event written this very millisecond may not show yet (Redis, Postgres).
    return sum(1 for e in await settled_log(backend, job_id) if e.type == "job.failed")


async def test_undecodable_data_is_quarantined_and_the_rest_flows(
    backend: Backend, peer: Backend, raw: RawStore
) -> None:
    bad = await enqueue_one(backend)
    good = [await enqueue_one(backend, new(data={"n": i})) for i in range(2)]
    await raw.put(bad, "data", BAD)

    job = await peer.get(bad)  # another process's read finds it first
    assert job is not None
    assert job.data is None
    assert job.task == "t" and job.queue == "q"
    error = assert_quarantined(job, "data", BAD)
    assert error["previous"] is None

    listed = {j.id: j for j in await backend.query(queue="q")}
    assert set(listed) == {bad, *good}
    assert listed[bad].state is JobState.FAILED
    assert [j.id for j in await backend.query(state=JobState.FAILED)] == [bad]
    counts = (await backend.counts(["q"]))["q"]
    assert (counts[JobState.QUEUED], counts[JobState.FAILED]) == (2, 1)

    leases = await backend.claim(["q"], "w1", 10, LONG)
    assert sorted(x.job_id for x in leases) == sorted(good)

    again = await must_get(backend, bad)
    assert again.error == job.error  # quarantined once: reads do not rewrite it
    assert await failed_events(backend, bad) == 1


async def test_undecodable_result_is_quarantined(backend: Backend, raw: RawStore) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    assert (await backend.finish([(lease, completed({"ok": True}))])) == [True]
    await raw.put(job_id, "result", BAD)

    job = await must_get(backend, job_id)
    assert job.result is None
    assert job.data == {}  # the other fields still read
    assert_quarantined(job, "result", BAD)
    (finished,) = await backend.wait_finished([job_id], 0)
    assert finished.error == job.error
    counts = (await backend.counts(["q"]))["q"]
    assert (counts[JobState.COMPLETED], counts[JobState.FAILED]) == (0, 1)


async def test_a_worker_fails_an_undecodable_payload_and_takes_the_next_jobs(
    app: Workhorse, backend: Backend, raw: RawStore
) -> None:
    ran: list[int] = []

    @app.task(name="count", queue="q")
    async def count(data: dict[str, int]) -> int:
        ran.append(data["n"])
        return data["n"]

    bad = await app.enqueue("count", {"n": -1})
    await raw.put(bad.id, "data", BAD)
    good = await app.enqueue_many("count", [{"n": i} for i in range(5)])
    worker = app.worker(queues=["q"], concurrency=2, shutdown_grace=1.0)
    running = asyncio.create_task(worker.run())
    try:
        for h in good:
            assert (await app.wait(h.id, timeout=10)).state is JobState.COMPLETED
        job = await app.wait(bad.id, timeout=10)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)  # a worker that crashed fails the test here
    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert job.attempts == 1
    error = assert_quarantined(job, "data", BAD)
    # The worker failed it first, as a payload it could not read; that error is kept.
    assert error["previous"]["type"] == "workhorse.errors.PayloadError"


@pytest.mark.parametrize("backend_kind", only("redis"))  # a hash missing fields: Redis's own
async def test_redis_hash_missing_fields_is_quarantined_by_claim(
    backend: Backend, raw: RawStore
) -> None:
    bad = await enqueue_one(backend)
    good = await enqueue_one(backend)
    before = await raw.fields(bad)
    await raw.drop_fields(bad, "t", "a", "m")

    (lease,) = await backend.claim(["q"], "w1", 10, LONG)  # does not raise
    assert lease.job_id == good
    job = await must_get(backend, bad)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error["message"].startswith(
        "record could not be decoded: missing or malformed field(s) task, attempts, max_attempts"
    )
    # Every field it still had is kept, raw.
    kept = {k: base64.b64decode(v) for k, v in job.error["raw"].items()}
    assert kept["data"] == before[b"d"]
    assert kept["queue"] == b"q"
    assert "task" not in kept
    assert job.data == {}
    counts = (await backend.counts(["q"]))["q"]
    assert (counts[JobState.ACTIVE], counts[JobState.FAILED], counts[JobState.QUEUED]) == (1, 1, 0)
    assert [j.id for j in await backend.query(state=JobState.FAILED)] == [bad]
    assert await failed_events(backend, bad) == 1


@pytest.mark.parametrize("backend_kind", only("redis"))
async def test_redis_hash_missing_fields_is_quarantined_by_a_read(
    backend: Backend, raw: RawStore
) -> None:
    bad = await enqueue_one(backend)
    await raw.drop_fields(bad, "t", "c", "s")

    (job,) = await backend.query(queue="q")  # does not raise
    assert job.id == bad
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error["message"].startswith("record could not be decoded: ")
    assert base64.b64decode(job.error["raw"]["data"]) == b"{}"
    assert await backend.claim(["q"], "w1", 10, LONG) == []
    assert (await must_get(backend, bad)).error == job.error


@pytest.mark.parametrize("backend_kind", only("sqlite"))  # any type in any column
async def test_sqlite_a_number_column_holding_text_is_quarantined(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    path = backend.path  # type: ignore[attr-defined]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE wh_jobs SET created_at = 'yesterday' WHERE id = ?", (job_id,))
        db.commit()

    job = await must_get(backend, job_id)
    error = assert_quarantined(job, "created_at", b"yesterday")
    assert job.created_at.timestamp() == 0  # shown as the epoch from now on
    assert job.data == {}
    assert (await must_get(backend, job_id)).error == error  # the row reads cleanly now
    assert await failed_events(backend, job_id) == 1
    assert await backend.claim(["q"], "w1", 10, LONG) == []
