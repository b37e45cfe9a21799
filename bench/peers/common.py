"""What every peer module shares: the job counter its tasks call, and the task names.

Stdlib only: this runs inside ``.venv-peers``, where workhorse is not installed.
"""

from __future__ import annotations

import itertools
import threading
import time

QUEUE = "default"
NOOP = "noop"
SLEEP = "sleep10"
PING = "ping"  # returns 1 with results kept: the run-and-await measurement's task
POLL_S = 0.001  # for libraries whose result wait polls: 1 ms, their best case


class Tally:
    """Counts finished jobs from any thread. The first and the ``n``-th finish are timed
    (wall clock and this process's CPU), so start-up is left out of the rate."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._count = itertools.count()  # next() is atomic under the GIL: no lock per job
        self.first: tuple[float, float] | None = None
        self.last: tuple[float, float] | None = None
        self.done = threading.Event()

    def hit(self) -> None:
        k = next(self._count)
        if k == 0:
            self.first = (time.perf_counter(), time.process_time())
        if k == self.n - 1:
            self.last = (time.perf_counter(), time.process_time())
            self.done.set()

    def finished(self) -> int:
        # itertools.count has no getter; its repr shows the next value
        return int(repr(self._count)[6:-1])


TALLY = Tally(1 << 62)  # replaced by the child before the worker starts


def hit() -> None:
    TALLY.hit()
