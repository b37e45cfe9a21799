"""Singletons on the reference backend: one live job per task or per key."""

import asyncio
from typing import Any

import pytest

from workhorse import DuplicateJob, JobState, PayloadError, Workhorse


@pytest.fixture
async def app() -> Any:
    a = Workhorse("memory://", poll_interval=0.05)
    yield a
    await a.close()


async def test_global_singleton_returns_the_live_job(app: Workhorse) -> None:
    @app.task(singleton=True)
    async def sync_catalog() -> None: ...

    first = await sync_catalog.enqueue()
    second = await sync_catalog.enqueue()
    assert (first.status, second.status) == ("created", "duplicate")
    assert second.id == first.id
    assert (await app.counts())["default"]["queued"] == 1


async def test_keyed_singleton_is_per_key_and_stable(app: Workhorse) -> None:
    @app.task(singleton=lambda d: {"user": d["user_id"], "scope": d.get("scope", "all")})
    async def rebuild_user_feed(data: dict[str, Any]) -> None: ...

    a = await rebuild_user_feed.enqueue({"user_id": 1})
    b = await rebuild_user_feed.enqueue({"scope": "all", "user_id": 1})
    c = await rebuild_user_feed.enqueue({"user_id": 2})
    assert b.id == a.id
    assert c.id != a.id
    job = await app.get_job(a.id)
    assert job is not None
    assert job.dedup_key == 'rebuild_user_feed:{"scope":"all","user":1}'


async def test_on_duplicate_modes(app: Workhorse) -> None:
    @app.task(singleton=lambda d: d["k"], on_duplicate="replace")
    async def debounced(data: dict[str, Any]) -> None: ...

    first = await debounced.enqueue({"k": 1, "v": "old"})
    again = await debounced.options(delay=30).enqueue({"k": 1, "v": "new"})
    assert again.status == "replaced"
    assert again.id == first.id
    job = await app.get_job(first.id)
    assert job is not None
    assert job.data == {"k": 1, "v": "new"}
    assert job.state is JobState.SCHEDULED  # the delay started over
    skipped = await debounced.options(on_duplicate="skip").enqueue({"k": 1, "v": "x"})
    assert skipped.status == "skipped"
    with pytest.raises(DuplicateJob) as err:
        await debounced.options(on_duplicate="raise").enqueue({"k": 1})
    assert err.value.existing.id == first.id


async def test_key_released_when_job_ends(app: Workhorse) -> None:
    @app.task(singleton=True)
    async def once() -> str:
        return "done"

    worker = app.worker(queues=["default"])
    task = asyncio.create_task(worker.run())
    try:
        results = await asyncio.gather(*(app.run("once", timeout=10) for _ in range(50)))
        assert results == ["done"] * 50
        jobs = await app.jobs(task="once")
        assert len(jobs) == 1  # fifty callers, one execution
        again = await app.enqueue("once")
        assert again.status == "created"  # the key was freed when the job completed
    finally:
        worker.stop()
        await task


async def test_key_function_must_return_json(app: Workhorse) -> None:
    @app.task(singleton=lambda d: object())
    async def bad(data: dict[str, Any]) -> None: ...

    with pytest.raises(PayloadError, match="singleton key of 'bad'"):
        await bad.enqueue({})
