"""A queue's slots: jobs claimed ahead wait for a slot, get it from the handler that ends,
first claimed first, and never push the running count past the concurrency; by default
a worker holds ahead only the jobs its slots are expected to end within HOLD_FOR."""

from __future__ import annotations

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
