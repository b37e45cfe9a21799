"""Concurrency and rate limits through real workers on every backend.

Two apps on two backend objects stand for two worker processes: the limits must hold
through the store, not through anything one process keeps. Blocked jobs must neither
fail nor spend their attempts."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from workhorse import ConfigError, JobContext, Workhorse
from workhorse.backends import Backend
from workhorse.job import JobState

from .support import eventually
from .test_client import running, task

RUN = 20.0


@pytest.fixture
async def other(app: Workhorse, peer: Backend) -> AsyncIterator[Workhorse]:
    """A second app on its own backend object: another worker process's view."""
    a = Workhorse(backend=peer, poll_interval=0.05)
    await a.open()
    yield a
    await a.stop_workers()
    if peer is not app.backend:
        await a.close()


class Tracker:
    """Records, per limit key, how many runs overlap: the most at once, and when."""

    def __init__(self) -> None:
        self.active: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.starts: list[tuple[str, float]] = []
        self.together: set[frozenset[str]] = set()  # keys seen running at the same time

    async def run(self, key: str, seconds: float) -> None:
        self.active[key] += 1
        self.starts.append((key, time.time()))
        self.most[key] = max(self.most[key], self.active[key])
        live = frozenset(k for k, n in self.active.items() if n)
        if len(live) > 1:
            self.together.add(live)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.active[key] -= 1


def limited(
    apps: list[Workhorse], tracker: Tracker, seconds: float, **options: Any
) -> Callable[[], None]:
    """Register the same limited task on every app (each worker process has the code)."""

    def register() -> None:
        for a in apps:

            @task(a, name="charge", retries=0, **options)
            async def charge(data: dict[str, Any], ctx: JobContext) -> int:
                await tracker.run(str(data["account"]), seconds)
                return ctx.attempt

    register()
    return register


async def all_done(app: Workhorse, n: int) -> list[Any]:
    async def probe() -> list[Any]:
        jobs = await app.jobs(task="charge", limit=1000)
        finished = [j for j in jobs if j.finished]
        return jobs if len(finished) == n else []

    return await eventually(probe, f"{n} charge jobs to finish", timeout=RUN)


async def test_concurrency_one_per_key_across_workers(app: Workhorse, other: Workhorse) -> None:
    tracker = Tracker()
    limited([app, other], tracker, 0.15, concurrency=1, key=lambda d: d["account"])
    await app.enqueue_many("charge", [{"account": a, "n": i} for i in range(5) for a in "ab"])
    async with running(app, ["default"], concurrency=4), running(other, ["default"], concurrency=4):
        jobs = await all_done(app, 10)
    assert dict(tracker.most) == {"a": 1, "b": 1}  # never two of one account at once
    assert frozenset("ab") in tracker.together  # but the two accounts ran side by side
    # Waiting for the limit was no failure and spent no attempt (retries=0 here).
    assert {j.state for j in jobs} == {JobState.COMPLETED}
    assert {j.attempts for j in jobs} == {1}
    assert {j.result for j in jobs} == {1}


async def test_concurrency_n_is_reached_and_never_exceeded(
    app: Workhorse, other: Workhorse
) -> None:
    tracker = Tracker()
    limited([app, other], tracker, 0.2, concurrency=2)  # no key: one budget for the task
    await app.enqueue_many("charge", [{"account": "all", "n": i} for i in range(8)])
    async with running(app, ["default"], concurrency=3), running(other, ["default"], concurrency=3):
        jobs = await all_done(app, 8)
    assert tracker.most["all"] == 2
    assert {(j.state, j.attempts) for j in jobs} == {(JobState.COMPLETED, 1)}


async def test_a_failing_job_gives_its_slot_back(app: Workhorse) -> None:
    ran: list[int] = []

    @task(app, concurrency=1, key=lambda d: d["account"])
    async def charge(data: dict[str, Any]) -> int:
        ran.append(data["n"])
        if data["n"] == 0:
            raise RuntimeError("card declined")
        return int(data["n"])

    async with running(app, ["default"], concurrency=2):
        # One after the other: two claimed together take the key's slot in either order.
        first = await charge.enqueue({"account": "a", "n": 0})
        failed = await app.wait(first.id, RUN)
        second = await charge.enqueue({"account": "a", "n": 1})
        assert await second.result(timeout=RUN) == 1  # the failed job's slot was free
    assert failed.state is JobState.FAILED
    assert ran == [0, 1]


async def test_rate_limit_holds_across_workers(app: Workhorse, other: Workhorse) -> None:
    tracker = Tracker()
    limited([app, other], tracker, 0.0, rate="5/s")
    await app.enqueue_many("charge", [{"account": "x", "n": i} for i in range(15)])
    async with running(app, ["default"], concurrency=8), running(other, ["default"], concurrency=8):
        jobs = await all_done(app, 15)
    assert {(j.state, j.attempts) for j in jobs} == {(JobState.COMPLETED, 1)}
    starts = sorted(t for _, t in tracker.starts)
    # Fixed one-second windows on the store's clock: at most five starts in each. The
    # store's clock is this machine's; a start logged just past a window's turn may land
    # in the next second, hence one of slack.
    per_second = Counter(math.floor(t) for t in starts)
    assert max(per_second.values()) <= 6, per_second
    assert starts[-1] - starts[0] > 1.0  # fifteen at five a second take three windows


async def test_rate_per_key_keeps_keys_apart(app: Workhorse) -> None:
    tracker = Tracker()
    # Two a day: the window will not turn during the test, so a third must wait.
    limited([app], tracker, 0.0, rate="2/d", key=lambda d: d["account"])
    handles = await app.enqueue_many(
        "charge", [{"account": a, "n": i} for a in ("a", "b") for i in range(3)]
    )
    async with running(app, ["default"], concurrency=4):

        async def four_done() -> bool:
            jobs = await app.jobs(task="charge", state=JobState.COMPLETED)
            return len(jobs) == 4

        await eventually(four_done, "two jobs of each account to run", timeout=RUN)
        await asyncio.sleep(0.3)  # a worker that ignored the limit would run more now
        jobs = await app.jobs(task="charge", limit=100)
    assert Counter(k for k, _ in tracker.starts) == {"a": 2, "b": 2}
    blocked = [j for j in jobs if j.state is not JobState.COMPLETED]
    assert len(blocked) == 2
    assert {b.data["account"] for b in blocked} == {"a", "b"}
    # Blocked: back in the queue until the window turns, not failed, no attempt spent.
    assert {(b.state, b.attempts) for b in blocked} == {(JobState.SCHEDULED, 0)}
    assert len(handles) == 6


def test_a_bad_rate_is_refused_at_definition() -> None:
    app = Workhorse("memory://")
    for bad, problem in [
        ("100", "invalid rate '100'"),
        ("100/fortnight", "invalid rate"),
        ("0/s", "invalid rate"),
        ("-5/m", "invalid rate"),
        ("10/0s", "period must be > 0"),
        ("ten/s", "invalid rate"),
    ]:
        with pytest.raises(ConfigError, match=problem):

            @app.task(rate=bad)
            async def t() -> None: ...

    for bad_concurrency in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="concurrency must be an int >= 1"):

            @app.task(concurrency=bad_concurrency)  # type: ignore[arg-type]
            async def u() -> None: ...

    with pytest.raises(ConfigError, match="key must be a function"):

        @app.task(concurrency=1, key="account")  # type: ignore[call-overload, untyped-decorator]
        async def v() -> None: ...


def test_good_rates_parse() -> None:
    from workhorse.limits import parse_rate

    assert (parse_rate("100/m").limit, parse_rate("100/m").period) == (100, 60.0)
    assert parse_rate("5/s").period == 1.0
    assert parse_rate("10/30s").period == 30.0
    assert parse_rate(" 1000 / h ").period == 3600.0
    assert parse_rate("7/1.5m").period == 90.0
