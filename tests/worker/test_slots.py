"""A queue's slots: jobs claimed ahead wait for a slot, get it from the handler that ends,
first claimed first, and never push the running count past the concurrency; by default
a worker holds ahead only the jobs its slots are expected to end within HOLD_FOR, by the
run times of the handlers themselves."""

from __future__ import annotations

import time

import pytest

from workhorse import ConfigError, Workhorse
from workhorse.worker.slots import HOLD_FOR, SHORT_RUN, Slots


def test_a_job_claimed_beyond_the_free_slots_waits_for_one_handed_over() -> None:
    slots: Slots[str] = Slots(2, prefetch=2, running=2)  # both slots taken
    slots.held.extend(["first", "second"])
    assert slots.hand_over() == "first"  # a handler ended: its slot goes to the first
    assert slots.running == 2
    assert slots.hand_over() == "second"
    assert slots.hand_over() is None  # nothing held: the slot is free
    assert slots.hand_over() is None
    assert slots.running == 0


def test_a_stop_takes_every_held_job_to_send_it_back() -> None:
    slots: Slots[str] = Slots(1, prefetch=2, running=1)
    slots.held.extend(["a", "b"])
    assert slots.release_held() == ["a", "b"]
    assert slots.hand_over() is None
    assert slots.running == 0


def test_auto_prefetch_holds_none_until_a_job_ended_then_what_ends_within_hold_for() -> None:
    slots: Slots[str] = Slots(100)
    assert slots.free() == 100  # no run time known: claim only the free slots
    slots.ran(HOLD_FOR)  # short jobs: as many again held ahead, at most the slots
    assert slots.free() == 200
    long: Slots[str] = Slots(100)
    long.ran(HOLD_FOR * 50)  # two of them end within HOLD_FOR
    assert long.free() == 102
    long.ran(HOLD_FOR * 10_000)  # long jobs pull the mean up: nothing held ahead
    for _ in range(100):
        long.ran(HOLD_FOR * 10_000)
    assert long.free() == 100


def test_an_in_process_store_holds_no_sub_millisecond_job_ahead() -> None:
    local: Slots[str] = Slots(10, remote=False)
    local.ran(SHORT_RUN / 10)  # no round trip to save: claim only the free slots
    assert local.free() == 10
    local.ran(HOLD_FOR)
    for _ in range(100):
        local.ran(HOLD_FOR)
    assert local.free() == 20  # jobs of 10 ms: held ahead as on a server store
    remote: Slots[str] = Slots(10)
    remote.ran(SHORT_RUN / 10)
    assert remote.free() == 20


def test_a_fixed_prefetch_is_kept() -> None:
    slots: Slots[str] = Slots(10, prefetch=0)
    slots.ran(0.0)
    assert slots.free() == 10


async def test_a_negative_prefetch_fails_at_start_up(app: Workhorse) -> None:
    with pytest.raises(ConfigError, match="prefetch must be >= 0"):
        app.worker(prefetch=-1)


BLOCK = 0.005  # seconds each blocking handler holds the loop


def _measured(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The run times the worker hands the auto prefetch, in the order the jobs ended."""
    seen: list[float] = []
    ran = Slots.ran

    def spy(self: Slots[str], seconds: float) -> None:
        seen.append(seconds)
        ran(self, seconds)

    monkeypatch.setattr(Slots, "ran", spy)
    return seen


def _blocking(app: Workhorse) -> list[tuple[float, float]]:
    """Task ``block`` on queue q: holds the loop for BLOCK; its (start, end) times."""
    spans: list[tuple[float, float]] = []

    @app.task(queue="q")
    async def block(n: int) -> None:
        began = time.monotonic()
        time.sleep(BLOCK)  # noqa: ASYNC251 - the loop held while the batch's others wait
        spans.append((began, time.monotonic()))

    return spans


async def test_a_run_time_counts_from_the_handler_start_not_from_the_claim(
    app: Workhorse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ten jobs claimed in one batch, each blocking the loop: the last starts only after
    # the nine before it. Counted from the claim, its run would span all ten handlers (so
    # no-op jobs read as runs of milliseconds and were held ahead on in-process stores).
    seen = _measured(monkeypatch)
    spans = _blocking(app)

    await app.enqueue_many("block", range(10))
    await app.worker(queues=["q"], concurrency=10, burst=True).run()
    assert len(seen) == len(spans) == 10
    first_start, last_end = spans[0][0], spans[-1][1]
    assert max(seen) < last_end - first_start  # ~BLOCK each, not up to 10 x BLOCK


async def test_a_flow_step_s_run_time_is_its_handler_s_alone(
    app: Workhorse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One batch: the step first, then nine blocking jobs. The step's handler returns at
    # once; the engine then waits for the step's events to be stored, which the loop does
    # only after the nine. That wait is not the step's run time.
    seen = _measured(monkeypatch)
    spans = _blocking(app)

    @app.task(name="entry", flow="f", entry=True, queue="q")
    async def entry(n: int) -> int:
        return n

    run = await app.flows.start("f", 1)
    await app.enqueue_many("block", range(9))
    await app.worker(queues=["q"], concurrency=10, burst=True).run()
    assert await run.result(timeout=1) == {"entry": 1}
    assert len(seen) == 10 and len(spans) == 9
    *_, step = seen  # its outcome came last, after its events were stored
    assert step < spans[-1][1] - spans[0][0]  # not the nine jobs' time
