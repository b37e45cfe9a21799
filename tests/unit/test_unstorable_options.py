"""Options the stores cannot hold are refused where they are written, at definition or
at enqueue: ``backoff=float("inf")`` used to put ``"delay":inf`` into the Redis event log,
which then failed to decode."""

from __future__ import annotations

import math
from typing import Any

import pytest

from workhorse import ConfigError, Exponential, Fixed, JobState, Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.backoff import make_backoff
from workhorse.testing import FakeClock

BAD_SECONDS = [math.inf, -math.inf, math.nan, -1.0]


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_a_backoff_that_is_not_a_finite_number_of_seconds_is_refused(value: float) -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match="backoff"):

        @app.task(backoff=value)
        def job() -> None: ...

    with pytest.raises(ConfigError, match="backoff"):
        make_backoff(value)


@pytest.mark.parametrize(
    "make",
    [
        lambda v: Fixed(v),
        lambda v: Exponential(base=v),
        lambda v: Exponential(cap=v),
        lambda v: Exponential(factor=v),
    ],
)
@pytest.mark.parametrize("value", BAD_SECONDS)
def test_backoff_objects_refuse_what_cannot_be_stored(make: Any, value: float) -> None:
    with pytest.raises(ConfigError):
        make(value)


def test_exponential_backoff_holds_its_cap_on_a_late_attempt() -> None:
    assert Exponential(jitter=False).delay(5_000, None) == 3600.0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", math.inf),
        ("timeout", math.nan),
        ("timeout", 1e300),
        ("lease", math.inf),
        ("keep_for", -5),
        ("priority", 2**40),
        ("retries", 2**40),
    ],
)
def test_numeric_task_options_the_stores_cannot_hold_are_refused(option: str, value: Any) -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match=option):
        app.task(**{option: value})(lambda: None)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("delay", math.inf),
        ("delay", 1e300),
        ("at", math.inf),
        ("at", math.nan),
        ("at", 1e300),
        ("priority", -(2**40)),
        ("retries", 2**40),
        ("timeout", math.nan),
    ],
)
async def test_numeric_call_options_the_stores_cannot_hold_are_refused(
    option: str, value: Any
) -> None:
    app = Workhorse("memory://")

    @app.task
    def job() -> None: ...

    with pytest.raises(ConfigError, match=option.replace("at", "at=")):
        await job.enqueue(**{option: value})


async def test_a_custom_backoff_that_answers_inf_falls_back_to_the_default() -> None:
    clock = FakeClock()
    app = Workhorse(backend=MemoryBackend(clock=clock), poll_interval=0.05)

    @app.task(retries=1, backoff=lambda attempt, error: math.inf)
    def fails() -> None:
        raise RuntimeError("boom")

    from tests.worker.worker_helpers import running, wait_until

    async with app, running(app):
        handle = await fails.enqueue()

        async def waiting() -> bool:
            job = await app.get_job(handle.id)
            return job is not None and job.state is JobState.SCHEDULED

        await wait_until(waiting, 10, "the retry")
        job = await app.get_job(handle.id)
        assert job is not None
        assert job.run_at.timestamp() - clock() <= 1.0  # the default's first delay
        events = await app.backend.events()
        delays = [e.data["delay"] for e in events if e.type == "job.retrying"]
        assert delays and all(math.isfinite(d) for d in delays)
