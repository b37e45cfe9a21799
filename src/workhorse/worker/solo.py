"""A job that stalled repeatedly runs alone. When a worker dies, every job it ran counts a
stall, and the store cannot tell which one took it down; a job that was there at two
deaths is most likely the cause, so it runs with nothing beside it: its next death costs
no other job a stall, and the jobs that merely ran beside it once or twice keep their
budget."""

from __future__ import annotations

import asyncio

SOLO_AFTER = 2  # stalls after which a job runs alone


class Solo:
    """The worker's gate: a solo attempt waits until nothing else runs, and nothing starts
    while one waits or runs. The common path (no solo job) is a counter the worker moves
    itself (``others``), with no call."""

    def __init__(self) -> None:
        self.others = 0  # attempts running beside no solo one
        self.waiting = 0  # solo attempts waiting for their turn
        self.active = False  # a solo attempt runs
        self._changed = asyncio.Event()

    @property
    def busy(self) -> bool:
        """A solo attempt waits or runs: no other job may start."""
        return self.waiting > 0 or self.active

    async def turn(self) -> None:
        """Wait until nothing else runs, then run alone (call ``end`` after)."""
        self.waiting += 1
        try:
            while self.active or self.others:
                await self._wait()
        finally:
            self.waiting -= 1
            self._changed.set()  # if cancelled, those waiting for it look again
        self.active = True

    async def quiet(self) -> None:
        """Wait until no solo attempt waits or runs."""
        while self.busy:
            await self._wait()

    def end(self) -> None:
        self.active = False
        self._changed.set()

    def poke(self) -> None:
        """Something ended: those waiting look again."""
        self._changed.set()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()
