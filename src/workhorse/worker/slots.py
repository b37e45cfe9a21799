"""A queue's slots in one worker: how many of its jobs may run at once, and the jobs
claimed ahead of a free slot (``prefetch``), each of which starts in the slot a handler
gives up, on that step, instead of after the next claim's round trip."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

# Auto prefetch: hold ahead at most the jobs this queue's slots are expected to end within
# this many seconds, so a held job waits about that long for its slot (not a whole run of
# a long job while another worker idles).
HOLD_FOR = 0.01
# Where a claim does not cross a network (SQLite, memory), jobs shorter than this are not
# held ahead: the claim saves no round trip, and larger claims cost the worker ~17 % more
# CPU per no-op job on SQLite (docs/profiles.md).
SHORT_RUN = 0.001


@dataclass(slots=True)
class Slots(Generic[T]):
    size: int
    # Jobs claimed ahead of a free slot at most; None: as many as the slots end within
    # HOLD_FOR seconds by the mean run time so far (none before a first job ended).
    prefetch: int | None = None
    remote: bool = True  # a claim is a round trip to a server (see SHORT_RUN)
    mean_run: float = -1.0  # seconds, a moving mean of the attempts' run times (-1: none yet)
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
    held: deque[T] = field(default_factory=deque)

    def free(self) -> int:
        """How many jobs the next claim may take."""
        ahead = self.prefetch
        if ahead is None:
            mean = self.mean_run
            if mean < 0 or (mean < SHORT_RUN and not self.remote):
                ahead = 0
            elif mean <= HOLD_FOR:
                ahead = self.size
            else:
                ahead = int(self.size * HOLD_FOR / mean)
        room = self.size + ahead - self.used
        return min(room, room + self.size - self.finishing)

    def ran(self, seconds: float) -> None:
        """An attempt ran this long (auto prefetch); the first sets the mean."""
        mean = self.mean_run
        self.mean_run = seconds if mean < 0 else mean + (seconds - mean) * 0.1

    def hand_over(self) -> T | None:
        """A handler gives up its slot: the first job held for one, which takes the slot
        over (``running`` stays), or None and the slot is free."""
        if self.held:
            return self.held.popleft()
        self.running -= 1
        return None

    def release_held(self) -> list[T]:
        """Shutdown: the jobs waiting for a slot, to go back to their queue, not run."""
        held = list(self.held)
        self.held.clear()
        return held
