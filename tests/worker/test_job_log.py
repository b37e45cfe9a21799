"""``ctx.log`` by level, an error line that keeps its exception's traceback, and
``ctx.job()`` with the job's record."""

from __future__ import annotations

from typing import Any

from workhorse import JobContext, JobState, Workhorse

from .worker_helpers import running


async def test_log_levels_and_an_error_with_its_traceback(app: Workhorse) -> None:
    @app.task
    async def chatty(ctx: JobContext) -> None:
        ctx.log("plain")
        ctx.log.warning("disk almost full", free_mb=12)
        try:
            {}["missing"]
        except KeyError as e:
            ctx.log.error("lookup failed", exc=e, key="missing")
        ctx.log.error("no exception here")

    async with running(app):
        handle = await chatty.enqueue()
        job = await app.wait(handle.id, 5)

    assert job.state is JobState.COMPLETED
    levels = [(line["level"], line["message"]) for line in job.logs]
    assert levels == [
        ("info", "plain"),
        ("warning", "disk almost full"),
        ("error", "lookup failed"),
        ("error", "no exception here"),
    ]
    assert job.logs[1]["fields"] == {"free_mb": 12}
    err = job.logs[2]["fields"]["error"]
    assert err["type"] == "KeyError"
    assert '{}["missing"]' in err["traceback"]  # the line that raised is in it
    assert job.logs[2]["fields"]["key"] == "missing"
    assert "fields" not in job.logs[3]


async def test_ctx_job_is_the_stored_record(app: Workhorse) -> None:
    seen: dict[str, Any] = {}

    @app.task(retries=1)
    async def inspect_me(data: dict[str, Any], ctx: JobContext) -> None:
        job = await ctx.job()
        seen.update(id=job.id, data=job.data, state=job.state, attempts=job.attempts)

    async with running(app):
        handle = await inspect_me.enqueue({"n": 7})
        await app.wait(handle.id, 5)

    assert seen == {"id": handle.id, "data": {"n": 7}, "state": JobState.ACTIVE, "attempts": 1}
