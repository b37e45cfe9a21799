"""A job's log lines are bounded: a job keeps at most ``max_log_lines`` lines and
``max_log_bytes`` bytes, the newest ones, with a first line saying how many older ones were
dropped; on every backend, whether the lines go with the outcome or with progress."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import close_and_drop
from tests.worker.worker_helpers import running
from workhorse import JobContext, JobState, Workhorse
from workhorse.backends import Backend


@pytest.fixture
async def capped(backend: Backend) -> AsyncIterator[Workhorse]:
    app = Workhorse(backend=backend, poll_interval=0.05, max_log_lines=100, max_log_bytes=20_000)
    await app.open()
    yield app
    await close_and_drop(app, backend)


def _notice(line: dict[str, object]) -> int:
    fields = line.get("fields")
    assert isinstance(fields, dict) and "dropped" in fields, line
    return int(fields["dropped"])


async def test_an_attempt_keeps_the_newest_lines_and_says_how_many_it_dropped(
    capped: Workhorse,
) -> None:
    @capped.task
    async def chatty(ctx: JobContext) -> None:
        for n in range(5_000):
            ctx.log(f"line {n}")

    async with running(capped):
        job = await capped.wait((await chatty.enqueue()).id, 20)
    assert job.state is JobState.COMPLETED
    assert len(job.logs) == 101  # the newest 100 and the notice
    assert [line["message"] for line in job.logs[1:]] == [f"line {n}" for n in range(4900, 5000)]
    assert _notice(job.logs[0]) == 4900


async def test_lines_written_with_progress_count_toward_the_bound(capped: Workhorse) -> None:
    @capped.task
    async def reporting(ctx: JobContext) -> None:
        for n in range(1_000):
            ctx.log(f"line {n}")
            if n % 10 == 9:
                await ctx.progress(n)

    async with running(capped):
        job = await capped.wait((await reporting.enqueue()).id, 30)
    assert job.state is JobState.COMPLETED
    assert len(job.logs) == 101
    assert job.logs[-1]["message"] == "line 999"  # the newest stay; written ones are dropped
    assert job.logs[1]["message"] == "line 900"
    assert _notice(job.logs[0]) == 1_000 - 100


async def test_an_attempt_keeps_at_most_max_log_bytes(capped: Workhorse) -> None:
    @capped.task
    async def wordy(ctx: JobContext) -> None:
        for n in range(200):
            ctx.log(f"{n:04d}" + "x" * 1_000)

    async with running(capped):
        job = await capped.wait((await wordy.enqueue()).id, 20)
    assert job.state is JobState.COMPLETED
    kept = job.logs[1:]
    assert 10 <= len(kept) < 20  # about 1 KB each within 20,000 bytes
    assert kept[-1]["message"].startswith("0199")
    assert _notice(job.logs[0]) == 200 - len(kept)


async def test_a_huge_error_message_is_kept_clipped(capped: Workhorse) -> None:
    from workhorse.errors import MAX_ERROR_MESSAGE

    @capped.task
    async def shouting() -> None:
        raise ValueError("start " + "x" * 1_000_000 + " end")

    async with running(capped):
        job = await capped.wait((await shouting.enqueue()).id, 20)
    assert job.state is JobState.FAILED
    assert job.error is not None
    message = job.error["message"]
    assert len(message) < MAX_ERROR_MESSAGE + 100
    assert message.startswith("start ") and message.endswith(" end")
    assert "characters cut" in message
    assert len(job.error["traceback"]) < 70_000


async def test_progress_larger_than_max_payload_is_refused_to_the_task(
    backend: Backend,
) -> None:
    app = Workhorse(backend=backend, poll_interval=0.05, max_payload=1_000)

    @app.task
    async def boastful(ctx: JobContext) -> None:
        await ctx.progress({"detail": "x" * 5_000})

    await app.open()
    try:
        async with running(app):
            job = await app.wait((await boastful.enqueue()).id, 20)
    finally:
        await close_and_drop(app, backend)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "progress is 5,013 bytes, over the 1,000-byte cap" in job.error["message"]
    assert job.progress is None
