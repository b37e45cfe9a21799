"""A queue's slots: jobs claimed ahead wait for a slot, get it from the handler that ends,
first claimed first, and never push the running count past the concurrency."""

from __future__ import annotations

import pytest

from workhorse import ConfigError, Workhorse
from workhorse.worker.slots import Slots


async def test_a_job_claimed_beyond_the_free_slots_waits_for_one_handed_over() -> None:
    slots = Slots(2, running=2)  # both slots taken
    first, second = slots.wait(), slots.wait()
    assert slots.running == 2
    slots.leave()  # a handler ended: its slot goes to the first job waiting
    assert first.done() and not second.done()
    assert slots.running == 2
    slots.leave()
    assert second.done()
    slots.leave()
    slots.leave()
    assert slots.running == 0


async def test_a_job_that_went_back_is_skipped_when_a_slot_is_handed_over() -> None:
    slots = Slots(1, running=1)
    gone, waiting = slots.wait(), slots.wait()
    gone.cancel()
    slots.leave()
    assert waiting.done() and not waiting.cancelled()
    assert slots.running == 1


async def test_a_stop_sends_every_waiting_job_back() -> None:
    slots = Slots(1, running=1)
    gates = [slots.wait(), slots.wait()]
    slots.release_gated()
    assert all(g.cancelled() for g in gates)
    slots.leave()
    assert slots.running == 0


async def test_a_negative_prefetch_fails_at_start_up(app: Workhorse) -> None:
    with pytest.raises(ConfigError, match="prefetch must be >= 0"):
        app.worker(prefetch=-1)
