"""Helpers for testing code that uses workhorse.

``FakeClock`` drives the memory backend's clock by hand, so lease expiry, retry backoff
and delayed jobs can be tested without sleeping::

    clock = FakeClock()
    app = Workhorse(backend=MemoryBackend(clock=clock))
    await task.options(delay=60).enqueue(data)
    clock.advance(60)          # the job is due now
"""

from __future__ import annotations

import time
from datetime import timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told to. Calling it returns epoch seconds, as
    ``time.time`` does, so it can stand in wherever a backend takes ``clock=``."""

    __slots__ = ("_now",)

    def __init__(self, start: float | None = None) -> None:
        # Start at the real time so job ids, log lines and datetimes look ordinary.
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float | timedelta) -> float:
        """Move the clock forward and return the new time."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if step < 0:
            raise ValueError(f"a clock only moves forward; advance() got {step}")
        self._now += step
        return self._now

    def set(self, now: float) -> None:
        """Jump to an absolute time (epoch seconds), forward only."""
        if now < self._now:
            raise ValueError(f"a clock only moves forward: {now} is before {self._now}")
        self._now = float(now)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
