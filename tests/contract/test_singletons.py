"""Singletons on every backend: the store's dedup key with debounce (``NewJob.replace``),
then through the app: global and keyed singletons, ``on_duplicate``, the key released when
the job ends, and many callers of run() sharing one execution."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from workhorse import DuplicateJob, JobCancelled, JobContext, JobFailed, PayloadError, Workhorse
from workhorse.backends import Backend
from workhorse.job import JobState

from .support import LONG, claim_one, completed, enqueue_one, eventually, must_get, new
from .test_client import running, task

RUN = 10.0


# -- the store: dedup key with replace (debounce) ---------------------------------------
async def test_replace_takes_the_newest_payload_and_restarts_the_delay(backend: Backend) -> None:
    first = new(data={"v": "old"}, dedup_key="feed:u1", delay=0.2)
    job_id = await enqueue_one(backend, first)
    before = await must_get(backend, job_id)
    await asyncio.sleep(0.1)
    (res,) = await backend.enqueue(
        [replace(new(data={"v": "new"}, dedup_key="feed:u1", delay=30, priority=3), replace=True)]
    )
    assert (res.id, res.created, res.replaced) == (job_id, False, True)
    assert res.state is JobState.SCHEDULED
    job = await must_get(backend, job_id)
    assert job.data == {"v": "new"}
    assert job.priority == 3
    assert job.state is JobState.SCHEDULED
    assert (job.run_at - before.run_at).total_seconds() > 25  # the wait started over
    await asyncio.sleep(0.3)  # past the first due time: the replaced job must not run yet
    assert await backend.claim(["q"], "w1", 10, LONG) == []
    assert (await backend.counts(["q"]))["q"]["scheduled"] == 1


async def test_replace_can_make_a_delayed_job_due_now(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(data={"v": 1}, dedup_key="k", delay=60))
    (res,) = await backend.enqueue([replace(new(data={"v": 2}, dedup_key="k"), replace=True)])
    assert (res.id, res.replaced, res.state) == (job_id, True, JobState.QUEUED)
    lease = await claim_one(backend)
    assert lease.job_id == job_id
    assert lease.data == b'{"v":2}'


async def test_replace_leaves_a_started_job_alone(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(data={"v": "running"}, dedup_key="k"))
    lease = await claim_one(backend)
    (res,) = await backend.enqueue([replace(new(data={"v": "late"}, dedup_key="k"), replace=True)])
    assert (res.id, res.created, res.replaced) == (job_id, False, False)
    assert res.state is JobState.ACTIVE
    job = await must_get(backend, job_id)
    assert (job.state, job.data) == (JobState.ACTIVE, {"v": "running"})
    assert await backend.finish([(lease, completed("ok"))]) == [True]
    # Finished, the key is free: the next one is a new job.
    (res,) = await backend.enqueue([replace(new(data={"v": "next"}, dedup_key="k"), replace=True)])
    assert res.created and res.id != job_id and not res.replaced


async def test_a_duplicate_without_replace_keeps_the_first_payload(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(data={"v": 1}, dedup_key="k", delay=60))
    (res,) = await backend.enqueue([new(data={"v": 2}, dedup_key="k")])
    assert (res.id, res.created, res.replaced) == (job_id, False, False)
    job = await must_get(backend, job_id)
    assert (job.data, job.state) == ({"v": 1}, JobState.SCHEDULED)


async def test_replace_within_one_batch_the_last_wins(backend: Backend) -> None:
    batch = [
        new(data={"n": 1}, dedup_key="k"),
        replace(new(data={"n": 2}, dedup_key="k"), replace=True),
        replace(new(data={"n": 3}, dedup_key="k"), replace=True),
    ]
    results = await backend.enqueue(batch)
    assert [r.created for r in results] == [True, False, False]
    assert {r.id for r in results} == {batch[0].id}
    assert (await must_get(backend, batch[0].id)).data == {"n": 3}
    assert (await backend.counts(["q"]))["q"]["queued"] == 1


async def test_concurrent_replaces_leave_one_job(backend: Backend, peer: Backend) -> None:
    await enqueue_one(backend, new(data={"n": -1}, dedup_key="k"))
    results = await asyncio.gather(
        *(
            b.enqueue([replace(new(data={"n": i}, dedup_key="k"), replace=True)])
            for i, b in enumerate([backend, peer] * 10)
        )
    )
    ids = {r[0].id for r in results}
    assert len(ids) == 1
    assert all(r[0].replaced for r in results)
    counts = (await backend.counts(["q"]))["q"]
    assert counts["queued"] + counts["scheduled"] == 1
    assert (await must_get(backend, ids.pop())).data["n"] in range(20)


# -- through the app ----------------------------------------------------------------------
async def test_global_singleton(app: Workhorse) -> None:
    @task(app, singleton=True)
    async def sync_catalog() -> dict[str, bool]:
        return {"ok": True}

    first = await sync_catalog.enqueue()
    second = await app.enqueue("sync_catalog")
    assert (first.status, second.status) == ("created", "duplicate")
    assert second.id == first.id
    assert second.state is JobState.QUEUED
    assert (await app.counts(["default"]))["default"]["queued"] == 1


async def test_singleton_is_per_queue(app: Workhorse) -> None:
    """Jobs sent to another queue by a per-call override hold their own key there: one
    live job per queue (docs/singletons.md)."""

    @task(app, singleton=True)
    async def sync_catalog() -> None: ...

    a = await sync_catalog.enqueue()
    b = await sync_catalog.options(queue="priority").enqueue()
    c = await sync_catalog.options(queue="priority").enqueue()
    d = await sync_catalog.enqueue()
    assert (a.status, b.status, c.status, d.status) == (
        "created",
        "created",
        "duplicate",
        "duplicate",
    )
    assert b.id != a.id and c.id == b.id and d.id == a.id
    counts = await app.counts(["default", "priority"])
    assert (counts["default"]["queued"], counts["priority"]["queued"]) == (1, 1)


async def test_keyed_singleton_is_per_key_and_stable(app: Workhorse) -> None:
    @task(app, singleton=lambda d: {"user_id": d["user_id"], "scope": d.get("scope", "all")})
    async def rebuild_user_feed(data: dict[str, Any]) -> None: ...

    a = await rebuild_user_feed.enqueue({"user_id": "u1"})
    b = await rebuild_user_feed.enqueue({"scope": "all", "user_id": "u1", "extra": 1})
    c = await rebuild_user_feed.enqueue({"user_id": "u2"})
    assert (a.status, b.status, c.status) == ("created", "duplicate", "created")
    assert b.id == a.id and c.id != a.id
    job = await app.get_job(a.id)
    assert job is not None
    assert job.dedup_key == 'rebuild_user_feed:{"scope":"all","user_id":"u1"}'


async def test_different_keys_run_in_parallel(app: Workhorse) -> None:
    active: set[str] = set()
    overlapped = asyncio.Event()

    @task(app, singleton=lambda d: d["user_id"])
    async def rebuild_user_feed(data: dict[str, Any]) -> str:
        active.add(data["user_id"])
        if len(active) == 2:
            overlapped.set()
        async with asyncio.timeout(RUN):
            await overlapped.wait()
        return str(data["user_id"])

    async with running(app, ["default"]):
        results = await asyncio.gather(
            app.run("rebuild_user_feed", {"user_id": "u1"}, timeout=RUN),
            app.run("rebuild_user_feed", {"user_id": "u2"}, timeout=RUN),
        )
    assert list(results) == ["u1", "u2"]


async def test_on_duplicate_modes(app: Workhorse) -> None:
    @task(app, singleton=lambda d: d["k"])
    async def debounced(data: dict[str, Any]) -> None: ...

    first = await debounced.options(delay=60).enqueue({"k": 1, "v": "first"})
    same = await debounced.enqueue({"k": 1, "v": "ignored"})
    assert (same.status, same.id) == ("duplicate", first.id)
    skipped = await debounced.options(on_duplicate="skip").enqueue({"k": 1, "v": "x"})
    assert (skipped.status, skipped.id) == ("skipped", first.id)
    with pytest.raises(DuplicateJob) as err:
        await debounced.options(on_duplicate="raise").enqueue({"k": 1})
    assert err.value.existing.id == first.id
    assert err.value.existing.data == {"k": 1, "v": "first"}
    replaced = await debounced.options(on_duplicate="replace", delay=30).enqueue(
        {"k": 1, "v": "new"}
    )
    assert (replaced.status, replaced.id) == ("replaced", first.id)
    job = await app.get_job(first.id)
    assert job is not None
    assert (job.data, job.state) == ({"k": 1, "v": "new"}, JobState.SCHEDULED)
    assert len(await app.jobs(task="debounced")) == 1


async def test_replace_as_a_task_option_debounces(app: Workhorse) -> None:
    @task(app, singleton=True, on_duplicate="replace")
    async def reindex(data: dict[str, Any]) -> Any:
        return data

    for i in range(5):
        handle = await reindex.options(delay=0.3).enqueue({"n": i})
    assert handle.status == "replaced"
    async with running(app, ["default"]):
        assert await handle.result(timeout=RUN) == {"n": 4}
    assert len(await app.jobs(task="reindex")) == 1


async def test_key_released_when_the_job_completes(app: Workhorse) -> None:
    @task(app, singleton=True)
    async def once() -> str:
        return "done"

    async with running(app, ["default"]):
        first = await once.enqueue()
        assert await first.result(timeout=RUN) == "done"
        again = await once.enqueue()
        assert again.status == "created" and again.id != first.id
        assert await again.result(timeout=RUN) == "done"


async def test_key_held_through_retries_and_released_on_final_failure(app: Workhorse) -> None:
    attempts: list[int] = []

    @task(app, singleton=True, retries=1, backoff=0.3)
    async def flaky(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("down")

    async with running(app, ["default"]):
        first = await flaky.enqueue()

        async def waiting_retry() -> bool:
            job = await app.get_job(first.id)
            return job is not None and job.attempts == 1 and job.state is JobState.SCHEDULED

        await eventually(waiting_retry, "the first attempt to fail and wait for its retry")
        during = await flaky.enqueue()
        assert (during.status, during.id) == ("duplicate", first.id)  # still live
        with pytest.raises(JobFailed):
            await first.result(timeout=RUN)
    assert attempts == [1, 2]
    # With the worker stopped, so the new job cannot run before it is looked at.
    after = await flaky.enqueue()
    assert after.status == "created" and after.id != first.id
    await after.cancel()


async def test_key_released_when_a_queued_job_is_cancelled(app: Workhorse) -> None:
    @task(app, singleton=lambda d: d["user_id"])
    async def rebuild_user_feed(data: dict[str, Any]) -> None: ...

    first = await rebuild_user_feed.options(delay=60).enqueue({"user_id": 7})
    assert await first.cancel() is JobState.CANCELLED
    again = await rebuild_user_feed.enqueue({"user_id": 7})
    assert again.status == "created" and again.id != first.id


async def test_key_released_when_a_running_job_is_cancelled(app: Workhorse) -> None:
    started = asyncio.Event()

    @task(app, singleton=True)
    async def long_one() -> None:
        started.set()
        await asyncio.sleep(RUN)

    async with running(app, ["default"], lease=0.3):  # a cancel reaches it at a renewal
        first = await long_one.enqueue()
        async with asyncio.timeout(RUN):
            await started.wait()
        assert (await long_one.enqueue()).status == "duplicate"
        await first.cancel()
        with pytest.raises(JobCancelled):
            await first.result(timeout=RUN)
        again = await long_one.enqueue()
        assert again.status == "created" and again.id != first.id
        await again.cancel()


async def test_many_run_callers_share_one_execution(app: Workhorse) -> None:
    executions: list[str] = []

    @task(app, singleton=lambda d: {"catalog": d["catalog"]})
    async def sync_catalog(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        executions.append(ctx.job_id)
        # Long enough for all fifty enqueues to land while this one is live.
        await asyncio.sleep(1.0)
        return {"job": ctx.job_id, "catalog": data["catalog"]}

    async with running(app, ["default"]):
        results = await asyncio.gather(
            *(
                app.run("sync_catalog", {"catalog": "books", "caller": i}, timeout=RUN)
                for i in range(50)
            )
        )
    assert len(executions) == 1
    assert results == [{"job": executions[0], "catalog": "books"}] * 50


async def test_a_key_function_returning_non_json_is_refused_at_enqueue(app: Workhorse) -> None:
    @task(app, singleton=lambda d: {"when": object()})
    async def bad(data: dict[str, Any]) -> None: ...

    with pytest.raises(PayloadError, match="singleton key of 'bad'.*not JSON"):
        await bad.enqueue({"x": 1})
    assert await app.jobs(task="bad") == []
