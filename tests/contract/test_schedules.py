"""Schedules on every backend: declared ones synced into the store when a worker starts,
schedules added and removed at run time, and an every-second cron fired by real workers,
once per tick however many of them run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from workhorse import ConfigError, JobContext, PayloadError, UnknownTaskError, Workhorse, schedules
from workhorse.backends import Backend
from workhorse.scheduler.ticker import FIRED, PENDING, Ticker, tick_job_id, tick_key

from .support import eventually
from .test_client import running, task

RUN = 10.0


class Export(BaseModel):
    format: str


@pytest.fixture
async def other(app: Workhorse, peer: Backend) -> AsyncIterator[Workhorse]:
    """A second app on its own backend object: another worker process's view."""
    a = Workhorse(backend=peer, poll_interval=0.05)
    await a.open()
    yield a
    await a.stop_workers()
    if peer is not app.backend:
        await a.close()


def declare_seed_schedules(app: Workhorse, every: str = "0 */6 * * *") -> None:
    @task(app, cron=every)
    async def cleanup_tokens() -> dict[str, bool]:
        return {"ok": True}

    @task(
        app,
        cron={
            "pattern": "0 9 * * 1",
            "timezone": "Europe/Berlin",
            "data": {"report_type": "weekly"},
        },
    )
    async def generate_report(data: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "report_type": data["report_type"]}


async def names(app: Workhorse) -> list[str]:
    return [s.name for s in await app.schedules()]


async def test_declared_schedules_are_synced_when_a_worker_starts(
    app: Workhorse, other: Workhorse
) -> None:
    declare_seed_schedules(app)
    assert await app.schedules() == []  # nothing is stored before a worker starts
    await app.add_schedule("nightly-export", "cleanup_tokens", "0 2 * * *")
    async with running(app, ["default"]):
        await eventually(
            lambda: _has(app, "generate_report"), "the declared schedules to be stored"
        )
    stored = {s.name: s for s in await other.schedules()}  # seen from another process
    assert sorted(stored) == ["cleanup_tokens", "generate_report", "nightly-export"]
    report = stored["generate_report"]
    assert (report.task, report.pattern, report.timezone) == (
        "generate_report",
        "0 9 * * 1",
        "Europe/Berlin",
    )
    assert report.data == {"report_type": "weekly"}
    assert report.source == "code"
    now = datetime.now(UTC)
    assert report.next_run > now
    assert report.next_run.astimezone(report.next_run.tzinfo).weekday() == 0  # a Monday
    assert report.last_run is None and report.last_job_id is None
    assert stored["nightly-export"].source == "api"

    # New code: cleanup_tokens every 4 hours, generate_report gone. Its worker syncs.
    @task(other, cron="0 */4 * * *", name="cleanup_tokens")
    async def cleanup_tokens_v2() -> None: ...

    async with running(other, ["default"]):
        await eventually(
            lambda: _lacks(other, "generate_report"), "a schedule dropped from code to go"
        )
    after = {s.name: s for s in await app.schedules()}
    assert sorted(after) == ["cleanup_tokens", "nightly-export"]  # the API one stays
    assert after["cleanup_tokens"].pattern == "0 */4 * * *"


async def _has(app: Workhorse, name: str) -> bool:
    return name in await names(app)


async def _lacks(app: Workhorse, name: str) -> bool:
    return name not in await names(app)


async def test_add_and_remove_at_run_time(app: Workhorse, other: Workhorse) -> None:
    @task(app)
    async def export(data: Export) -> str:
        return data.format

    added = await app.add_schedule("nightly-export", "export", "0 2 * * *", {"format": "csv"})
    assert (added.name, added.task, added.source) == ("nightly-export", "export", "api")
    (seen,) = await other.schedules()
    assert (seen.name, seen.pattern, seen.data) == (
        "nightly-export",
        "0 2 * * *",
        {"format": "csv"},
    )
    assert (seen.next_run.hour, seen.next_run.minute) == (2, 0)
    # The same name again replaces the schedule.
    await app.add_schedule(
        "nightly-export",
        export,
        {"pattern": "30 3 * * *", "timezone": "Asia/Tokyo", "data": {"format": "json"}},
    )
    (seen,) = await other.schedules()
    assert (seen.pattern, seen.timezone, seen.data) == (
        "30 3 * * *",
        "Asia/Tokyo",
        {"format": "json"},
    )
    assert await other.remove_schedule("nightly-export") is True
    assert await app.schedules() == []
    assert await app.remove_schedule("nightly-export") is False

    with pytest.raises(UnknownTaskError):
        await app.add_schedule("x", "no_such_task", "* * * * *")
    with pytest.raises(ConfigError, match="invalid cron pattern"):
        await app.add_schedule("x", "export", "every night", {"format": "csv"})
    with pytest.raises(ConfigError, match="unknown time zone"):
        await app.add_schedule("x", "export", {"pattern": "0 2 * * *", "timezone": "Moon/Base"})
    with pytest.raises(PayloadError, match="invalid payload for task 'export'"):
        await app.add_schedule("x", "export", "0 2 * * *", {"fmt": "csv"})
    with pytest.raises(ConfigError):
        await app.add_schedule("bad name!", "export", "0 2 * * *", {"format": "csv"})
    assert await app.schedules() == []


async def test_an_every_second_cron_fires_through_a_worker(app: Workhorse) -> None:
    runs: list[tuple[str, Any]] = []

    @task(app, cron={"pattern": "* * * * * *", "data": {"kind": "tokens"}})
    async def cleanup_tokens(data: dict[str, Any], ctx: JobContext) -> None:
        runs.append((ctx.job_id, data))

    async with running(app, ["default"]):

        async def twice() -> bool:
            return len(runs) >= 2

        await eventually(twice, "two ticks of an every-second schedule to run", timeout=RUN)
        (info,) = await app.schedules()
    assert all(data == {"kind": "tokens"} for _, data in runs)
    assert len({job_id for job_id, _ in runs}) == len(runs)
    assert info.last_job_id in {job_id for job_id, _ in runs} | {None}
    assert info.last_run is not None
    assert info.next_run > info.last_run


async def test_a_schedule_added_at_run_time_is_picked_up(app: Workhorse) -> None:
    runs: list[str] = []

    @task(app)
    async def ping(ctx: JobContext) -> None:
        runs.append(ctx.job_id)

    async with running(app, ["default"]):
        await asyncio.sleep(0.2)  # the worker is up and has loaded no schedule
        await app.add_schedule("pinger", ping, "* * * * * *")

        async def fired() -> bool:
            return bool(runs)

        # Workers reload the stored schedules every five seconds.
        await eventually(fired, "a run-time schedule to fire", timeout=8.0)


async def test_two_workers_fire_each_tick_once(app: Workhorse, other: Workhorse) -> None:
    ran: list[str] = []
    for a in (app, other):

        @task(a, cron={"pattern": "* * * * * *", "data": {"n": 1}}, name="beat")
        async def beat(ctx: JobContext) -> None:
            ran.append(ctx.job_id)

    start = time.time()
    async with running(app, ["default"]), running(other, ["default"]):
        await asyncio.sleep(3.5)
    end = time.time()
    (schedule,) = (await schedules.load(app.backend)).values()
    # Every tick claimed in the window, and by whom.
    owners = {}
    for second in range(int(start) - 1, int(end) + 2):
        owner = await app.backend.kv_get(tick_key(schedule, datetime.fromtimestamp(second, UTC)))
        if owner is not None:
            owners[second] = owner
    jobs = await app.jobs(task="beat", limit=100)
    assert len(owners) >= 2
    assert len(jobs) == len(owners)  # one job per claimed tick, never two
    assert all(job.data == {"n": 1} for job in jobs)
    assert set(ran) <= {job.id for job in jobs}


class ExportV2(BaseModel):
    format: str
    bucket: str  # new code needs a field the stored schedule's data lacks


async def test_a_worker_that_cannot_fire_a_tick_leaves_it_to_others(
    app: Workhorse, other: Workhorse
) -> None:
    """A rolling deploy: one worker lacks the task, another refuses the schedule's data.
    Neither may claim the tick and lose it; a worker that can fire it still does."""

    @task(app)
    async def export(data: Export) -> str:
        return data.format

    await app.add_schedule("nightly-export", "export", "* * * * * *", {"format": "csv"})
    (schedule,) = (await schedules.load(app.backend)).values()
    sighted = datetime.fromtimestamp(await app.backend.now(), UTC)
    now = sighted + timedelta(seconds=2)  # a tick after the schedule's first sighting
    tick = schedule.cron.latest_at_or_before(now)

    lacking = Ticker(other, "old-worker")  # other knows no task "export"
    await lacking._fire_due(schedule, sighted)
    await lacking._fire_due(schedule, now)
    assert await other.backend.kv_get(tick_key(schedule, tick)) is None

    @task(other, name="export")
    async def export_v2(data: ExportV2) -> str:
        return data.bucket

    refusing = Ticker(other, "new-worker")
    with pytest.raises(PayloadError):
        await refusing._fire_due(schedule, now)
    assert await other.backend.kv_get(tick_key(schedule, tick)) is None

    able = Ticker(app, "worker")
    await able._fire_due(schedule, now)
    (job,) = await app.jobs(task="export")
    assert await app.backend.kv_get(tick_key(schedule, tick)) == f"{FIRED}{job.id}"
    assert job.data == {"format": "csv"}
    await able._fire_due(schedule, now)  # the same tick again: nothing new
    assert len(await app.jobs(task="export")) == 1


@pytest.mark.parametrize("died", ["before the enqueue", "after the enqueue"])
async def test_a_tick_whose_worker_died_after_claiming_it_fires_once(
    app: Workhorse, other: Workhorse, monkeypatch: pytest.MonkeyPatch, died: str
) -> None:
    """A worker SIGKILLed between claiming a tick and marking it fired leaves the claim
    pending. Another worker that saw it takes it over a lease later, even when later ticks
    have come since, and fires it under the tick's own job id: once, whether the dead
    worker had stored the job or not."""
    for a in (app, other):

        @task(a, name="export")
        async def export(data: Export) -> str:
            return data.format

    await app.add_schedule("nightly-export", "export", "* * * * * *", {"format": "csv"})
    (schedule,) = (await schedules.load(app.backend)).values()
    sighted = datetime.fromtimestamp(await app.backend.now(), UTC)
    now = sighted + timedelta(seconds=2)
    tick = schedule.cron.latest_at_or_before(now)
    key = tick_key(schedule, tick)

    dying = Ticker(app, "dying")

    async def killed(_s: Any, task_: Any, new: Any, *_rest: Any) -> None:
        if died == "after the enqueue":
            await app.client.submit(task_, new, {})
        # ... and the process is gone: the tick is never marked fired, nor given back.

    monkeypatch.setattr(dying, "_fire", killed)
    await dying._fire_due(schedule, sighted)
    await dying._fire_due(schedule, now)
    held = await app.backend.kv_get(key)
    assert held is not None and held.startswith(PENDING)
    stored = 1 if died == "after the enqueue" else 0
    assert len(await app.jobs(task="export")) == stored

    survivor = Ticker(other, "survivor")
    await survivor._fire_due(schedule, now)  # within a lease: its claimer may be slow
    assert await other.backend.kv_get(key) == held
    assert len(await other.jobs(task="export")) == stored

    later = now + timedelta(seconds=other.settings.lease + 1)  # many ticks later
    await survivor._fire_due(schedule, later)
    await survivor._fire_due(schedule, later)  # again: nothing new
    await Ticker(app, "newcomer")._fire_due(schedule, later)  # nor from a fresh worker
    jobs = {job.id: job for job in await other.jobs(task="export")}
    fired = tick_job_id(schedule, tick)
    latest = tick_job_id(schedule, schedule.cron.latest_at_or_before(later))
    assert sorted(jobs) == sorted([fired, latest])  # the dead worker's tick, once; the latest
    assert jobs[fired].data == {"format": "csv"}
    assert await other.backend.kv_get(key) == f"{FIRED}{fired}"
