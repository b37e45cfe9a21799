"""Cron rules and the tick claimer on the memory backend with a controlled clock."""

from datetime import UTC, datetime

import pytest

from workhorse import ConfigError, Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.cron import parse_cron
from workhorse.scheduler.ticker import Ticker


class Clock:
    def __init__(self, t: datetime) -> None:
        self.now = t.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, t: datetime) -> None:
        self.now = t.timestamp()


def at(h: int, m: int = 0, s: int = 0, day: int = 24) -> datetime:
    return datetime(2026, 11, day, h, m, s, tzinfo=UTC)


def test_patterns_and_zones() -> None:
    every6h = parse_cron("0 */6 * * *")
    assert every6h.next_after(at(6)) == at(12)
    assert every6h.latest_at_or_before(at(6)) == at(6)
    assert every6h.latest_at_or_before(at(5, 59)) == at(0)
    berlin = parse_cron({"pattern": "0 9 * * 1", "timezone": "Europe/Berlin", "data": {"r": 1}})
    assert berlin.next_after(at(0)) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # CET = UTC+1
    seconds = parse_cron("*/15 * * * * *")
    assert seconds.next_after(at(6, 0, 1)) == at(6, 0, 15)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("every day", "invalid cron pattern"),
        ("61 * * * *", "invalid cron pattern"),
        ({"pattern": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"pattern": "* * * * *", "catch_up": "all"}, "catch_up"),
        ({"cron": "* * * * *"}, "pattern"),
    ],
)
def test_bad_cron_refused_at_definition(spec: object, problem: str) -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match=problem):

        @app.task(cron=spec)  # type: ignore[arg-type]
        async def t() -> None: ...


def make_app(clock: Clock) -> Workhorse:
    app = Workhorse(backend=MemoryBackend(clock=clock))

    @app.task(cron={"pattern": "0 */6 * * *", "data": {"kind": "tokens"}})
    async def cleanup(data: dict[str, str]) -> None: ...

    return app


async def fire(app: Workhorse, tickers: list[Ticker], clock: Clock) -> None:
    now = datetime.fromtimestamp(clock(), UTC)
    for schedule in app.declared_schedules().values():
        for ticker in tickers:
            await ticker._fire_due(schedule, now)


async def test_each_tick_fires_once_across_workers() -> None:
    clock = Clock(at(5, 30))
    app = make_app(clock)
    tickers = [Ticker(app, f"w{i}") for i in range(5)]
    await fire(app, tickers, clock)  # first sighting at 05:30: the 00:00 tick is before it
    assert (await app.counts()) == {}
    clock.set(at(6, 0, 1))
    await fire(app, tickers, clock)
    await fire(app, tickers, clock)
    jobs = await app.jobs(task="cleanup")
    assert len(jobs) == 1
    assert jobs[0].data == {"kind": "tokens"}


async def test_missed_tick_fires_once_on_recovery_or_is_skipped() -> None:
    clock = Clock(at(5, 0))
    app = make_app(clock)
    ticker = Ticker(app, "w")
    await fire(app, [ticker], clock)
    clock.set(at(19, 0))  # every worker was down through 06:00, 12:00 and 18:00
    await fire(app, [ticker], clock)
    assert len(await app.jobs(task="cleanup")) == 1  # once, for the latest missed tick

    skip_clock = Clock(at(5, 0))
    skipper = Workhorse(backend=MemoryBackend(clock=skip_clock))

    @skipper.task(cron={"pattern": "0 */6 * * *", "catch_up": "skip"})
    async def report() -> None: ...

    t2 = Ticker(skipper, "w")
    await fire(skipper, [t2], skip_clock)
    skip_clock.set(at(7, 0))
    await fire(skipper, [t2], skip_clock)
    assert await skipper.jobs(task="report") == []
    skip_clock.set(at(12, 0, 2))
    await fire(skipper, [t2], skip_clock)
    assert len(await skipper.jobs(task="report")) == 1


async def test_runtime_schedules_and_sync() -> None:
    clock = Clock(at(5, 0))
    app = make_app(clock)
    from workhorse import schedules

    await schedules.sync_declared(app.backend, app.declared_schedules())
    await app.add_schedule("nightly", "cleanup", "0 2 * * *", data={"kind": "all"})
    names = [s.name for s in await app.schedules()]
    assert names == ["cleanup", "nightly"]
    nightly = next(s for s in await app.schedules() if s.name == "nightly")
    assert nightly.next_run == at(2, day=25)
    assert nightly.source == "api"
    # A declared schedule that is gone from code is removed; the API one stays.
    del app.tasks["cleanup"]
    await schedules.sync_declared(app.backend, app.declared_schedules())
    assert [s.name for s in await app.schedules()] == ["nightly"]
    assert await app.remove_schedule("nightly")
    assert await app.schedules() == []
    app.add_task(lambda: None, name="other")
    with pytest.raises(ConfigError, match="invalid cron"):
        await app.add_schedule("bad", "other", "nope")
