"""What a running task can do through its context, what the worker tells the in-process
bus, and cancelling an active job."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from workhorse import Event, JobCancelled, JobContext, JobState, Workhorse

from .worker_helpers import running, wait_until


async def test_log_lines_and_progress_are_stored_with_the_job(app: Workhorse) -> None:
    halfway = asyncio.Event()
    go_on = asyncio.Event()

    @app.task
    async def report(ctx: JobContext) -> str:
        ctx.log("starting", step=1)
        await ctx.progress(50)
        halfway.set()
        await go_on.wait()
        ctx.log("almost", level="warning")
        await ctx.progress({"done": 9, "of": 10})
        ctx.log("finished")
        return "ok"

    handle = await report.enqueue()
    async with running(app):
        await asyncio.wait_for(halfway.wait(), 5)
        mid = await app.get_job(handle.id)
        assert mid is not None
        assert mid.state is JobState.ACTIVE
        assert mid.progress == 50  # visible while the job runs
        assert [(line["message"], line.get("fields")) for line in mid.logs] == [
            ("starting", {"step": 1})
        ]
        go_on.set()
        job = await app.wait(handle.id, 5)

    assert job.progress == {"done": 9, "of": 10}
    assert [line["message"] for line in job.logs] == ["starting", "almost", "finished"]
    assert [line["level"] for line in job.logs] == ["info", "warning", "info"]


async def test_log_lines_of_a_failed_attempt_are_kept(app: Workhorse) -> None:
    @app.task
    async def fails(ctx: JobContext) -> None:
        ctx.log("about to fail")
        raise RuntimeError("no")

    async with running(app):
        handle = await fails.enqueue()
        job = await app.wait(handle.id, 5)
    assert job.state is JobState.FAILED
    assert [line["message"] for line in job.logs] == ["about to fail"]


async def test_ctx_enqueue_creates_a_follow_up_job(app: Workhorse) -> None:
    @app.task
    async def child(data: dict[str, int]) -> int:
        return data["n"] * 10

    @app.task
    async def parent(data: dict[str, int], ctx: JobContext) -> str:
        handle = await ctx.enqueue(child, {"n": data["n"] + 1})
        return handle.id

    async with running(app):
        child_id = await parent.run({"n": 4}, timeout=5)
        job = await app.wait(child_id, 5)
    assert job.task == "child"
    assert job.state is JobState.COMPLETED
    assert job.result == 50


async def test_bus_events_fire_in_order(app: Workhorse) -> None:
    seen: list[tuple[str, str | None, str | None]] = []
    completed_for_ok: list[str | None] = []

    def record(event: Event) -> None:
        seen.append((event.type, event.task, event.job_id))

    for kind in (
        "job.queued",
        "job.started",
        "job.progress",
        "job.completed",
        "job.retrying",
        "job.failed",
    ):
        app.on(kind, record, local=True)

    @app.on("job.completed", task="ok", local=True)
    async def only_ok(event: Event) -> None:  # async handlers are run as tasks
        completed_for_ok.append(event.job_id)

    @app.task
    async def ok(ctx: JobContext) -> None:
        await ctx.progress(1)

    @app.task(retries=1, backoff=0)
    async def bad() -> None:
        raise ValueError("x")

    async with running(app, concurrency=1):
        a = await ok.enqueue()
        await app.wait(a.id, 5)
        # The bus hears of an outcome just after the store has it, as a waiter does.
        await wait_until(lambda: ("job.completed", "ok", a.id) in seen, what="completed")
        b = await bad.enqueue()
        await app.wait(b.id, 5)
        await wait_until(lambda: ("job.failed", "bad", b.id) in seen, what="failed")
        await wait_until(lambda: completed_for_ok == [a.id], what="the async handler")

    assert seen == [
        ("job.queued", "ok", a.id),
        ("job.started", "ok", a.id),
        ("job.progress", "ok", a.id),
        ("job.completed", "ok", a.id),
        ("job.queued", "bad", b.id),
        ("job.started", "bad", b.id),
        ("job.retrying", "bad", b.id),
        ("job.started", "bad", b.id),
        ("job.failed", "bad", b.id),
    ]


async def test_a_handler_of_every_type_hears_the_worker_s_events(app: Workhorse) -> None:
    # The worker tests "*" apart from the types (a flag, not the set): it must still hear.
    seen: list[tuple[str, str | None]] = []
    app.on("*", lambda event: seen.append((event.type, event.job_id)), local=True)

    @app.task
    async def ok() -> None:
        return None

    async with running(app, concurrency=1):
        a = await ok.enqueue()
        await app.wait(a.id, 5)
        await wait_until(lambda: ("job.completed", a.id) in seen, what="completed")

    assert [t for t, job_id in seen if job_id == a.id] == [
        "job.queued",
        "job.started",
        "job.completed",
    ]


async def test_a_failing_event_handler_does_not_hurt_the_job(app: Workhorse) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("handler bug")

    app.on("job.completed", broken, local=True)

    @app.task
    async def fine() -> int:
        return 1

    async with running(app):
        assert await fine.run(timeout=5) == 1
        assert await fine.run(timeout=5) == 1  # and the worker still runs jobs


async def test_cancel_of_an_active_job_cancels_the_handler(app: Workhorse) -> None:
    started = asyncio.Event()
    handler_saw_cancel = asyncio.Event()

    @app.task
    async def endless(ctx: JobContext) -> None:
        ctx.log("started")
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            handler_saw_cancel.set()
            raise

    @app.task
    async def next_one() -> str:
        return "ran"

    async with running(app, lease=0.3, concurrency=1) as worker:  # renew/notice every 0.1 s
        caller = asyncio.create_task(app.run(endless, timeout=10))
        await asyncio.wait_for(started.wait(), 5)
        (active,) = await app.jobs(task="endless")
        assert await app.cancel(active.id) is JobState.ACTIVE  # asked, not yet stopped
        with pytest.raises(JobCancelled):
            await asyncio.wait_for(caller, 5)
        assert handler_saw_cancel.is_set()
        job = await app.get_job(active.id)
        assert job is not None
        assert job.state is JobState.CANCELLED
        assert [line["message"] for line in job.logs] == ["started"]
        assert await next_one.run(timeout=5) == "ran"  # the slot came back
        await wait_until(lambda: worker.active == 0, what="the slot to free")


async def test_cancel_of_a_queued_job_never_runs_it(app: Workhorse) -> None:
    ran = False

    @app.task
    async def never() -> None:
        nonlocal ran
        ran = True

    handle = await never.enqueue()
    assert await app.cancel(handle.id) is JobState.CANCELLED
    async with running(app):
        with pytest.raises(JobCancelled):
            await handle.result(timeout=5)
        await asyncio.sleep(0.1)
    assert not ran


async def test_a_log_field_that_is_not_json_does_not_wedge_the_worker(tmp_path: Path) -> None:
    # SQLite encodes log lines as JSON (memory keeps objects as they are): one odd value
    # must not make every outcome of the worker fail to write, forever.
    pytest.importorskip("workhorse.backends.sqlite")
    app = Workhorse(f"sqlite:///{tmp_path / 'logs.db'}")

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque 7>"

    @app.task
    async def odd(ctx: JobContext) -> int:
        ctx.log("with an object", thing=Opaque())
        return 1

    @app.task
    async def plain() -> int:
        return 2

    async with app, running(app, queues=["default"]):
        handle = await odd.enqueue()
        assert await plain.run(timeout=5) == 2
        assert await handle.result(timeout=5) == 1
        job = await app.get_job(handle.id)
    assert job is not None
    assert [(line["message"], line["fields"]) for line in job.logs] == [
        ("with an object", {"thing": "<Opaque 7>"})
    ]
