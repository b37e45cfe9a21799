"""What the worker's observers count beside attempts: stalls (labelled from the job's
record) and cron ticks, from the events of this process's bus."""

from __future__ import annotations

import asyncio

from workhorse import Workhorse, events
from workhorse.observability import observers


async def test_stalls_and_cron_ticks_are_counted_with_their_labels() -> None:
    app = Workhorse(url="memory://", stats=False)

    @app.task(queue="priority")
    async def nightly() -> None: ...

    try:
        handle = await nightly.enqueue()
        watch = await observers.acquire(app.client)
        try:
            app.bus.emit(events.stalled(handle.id))
            app.bus.emit(events.stalled("0" * 32))  # a job already gone
            app.bus.emit(events.cron_fired("at-night", handle.id, "nightly", "priority", 0.0))
            await asyncio.sleep(0.05)  # the stall handler reads the record
            tally = watch.tally
            assert tally.recoveries == 2
            assert tally.pair("priority", "nightly").stalled == 1
            assert tally.pair("", "").stalled == 1
            assert tally.cron == {("at-night", "nightly"): 1}
        finally:
            await observers.release(app.client)
        # Released: the bus no longer feeds it.
        app.bus.emit(events.cron_fired("at-night", handle.id, "nightly", "priority", 0.0))
        assert watch.tally.cron == {("at-night", "nightly"): 1}
    finally:
        await app.close()
