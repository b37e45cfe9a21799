"""A queue's slots in one worker: how many of its jobs may run at once, and the jobs
claimed ahead of a free slot (``prefetch``, off by default), which start the moment a
handler hands its slot on instead of after the next claim's round trip."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Slots:
    size: int
    # Jobs claimed ahead of a free slot at most. Off by default: measured, it gained
    # nothing for 10 ms jobs and cost no-op jobs on Redis (docs/profiles.md).
    prefetch: int = 0
    used: int = 0  # jobs claimed whose outcome is not yet with the finisher
    running: int = 0  # slots held: handlers running, or about to
    # Outcomes with the finisher, not yet written. Their slots are free, so the next claim
    # overlaps the finish's round trip; at most `size` may wait, or a slow store would
    # have this worker claim far ahead of what it can write.
    finishing: int = 0
    # Burst mode: since when this queue's claims come back empty with nothing running.
    empty_since: float | None = None
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    # Jobs claimed ahead, each waiting for a slot, first claimed first.
    gated: deque[asyncio.Future[None]] = field(default_factory=deque)

    def free(self) -> int:
        """How many jobs the next claim may take."""
        room = self.size + self.prefetch - self.used
        return min(room, room + self.size - self.finishing)

    def wait(self) -> asyncio.Future[None]:
        """A job claimed with every slot taken (``running == size``; a free slot is taken
        inline by the worker, ``running += 1``): a future set once a handler hands its
        slot over (``leave``)."""
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gated.append(gate)
        return gate

    def leave(self) -> None:
        """A slot is given up: the first job waiting for one gets it. (The worker's common
        path, nothing gated, does ``running -= 1`` inline.)"""
        while self.gated:
            gate = self.gated.popleft()
            if not gate.done():  # a cancelled one has gone back to its queue
                gate.set_result(None)
                return
        self.running -= 1

    def release_gated(self) -> None:
        """Shutdown: the jobs waiting for a slot go back to their queue, not run."""
        while self.gated:
            self.gated.popleft().cancel()
