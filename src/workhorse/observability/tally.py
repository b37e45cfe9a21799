"""The figures a worker process counts on its hot path: plain dicts and lists, a
microsecond per job. The store's counters (stats.py) and the Prometheus exporter
(process.py) read them off the hot path. The worker calls ``claimed`` once per claimed
batch and ``finished`` once per attempt; they make as few calls as they can (a count that
``python -m bench.calls`` watches): subscripts rather than ``get``, no per-job record of
the start (the worker passes it back), the first bucket found without a call."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from workhorse.job import Lease

# Seconds: from a no-op's milliseconds to a batch job's quarter hour.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
FIRST = BUCKETS[0]
# The event an outcome the store took is (``events.outcome_type``) -> the metric's outcome.
OUTCOMES = {
    "job.completed": "completed",
    "job.failed": "failed",
    "job.retrying": "retried",
    "job.cancelled": "cancelled",
}


@dataclass(slots=True)
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # +Inf last
    total: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.total}


@dataclass(slots=True)
class Pair:
    """One (queue, task)'s figures."""

    started: int = 0
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES.values(), 0))
    stalled: int = 0
    run: Histogram = field(default_factory=Histogram)
    wait: Histogram = field(default_factory=Histogram)


# A placeholder until a batch's first lease looks its pair up; never counted in.
_NO_PAIR = Pair()


class Tally:
    def __init__(self, histograms: bool = True) -> None:
        # The wait and run histograms' buckets are for the Prometheus exporter only: a
        # process without one keeps the counts and the waits' total (the store's figures).
        self.histograms = histograms
        self.pairs: dict[tuple[str, str], Pair] = {}
        # The same pairs by queue, then task: finished() looks one up per job, and two
        # string keys cost less than a tuple built, hashed and compared.
        self._by_queue: dict[str, dict[str, Pair]] = {}
        self.leases: defaultdict[str, int] = defaultdict(int)  # held now, per queue
        self.recoveries = 0
        self.cron: dict[tuple[str, str], int] = {}  # (schedule, task): ticks fired

    def pair(self, queue: str, task: str) -> Pair:
        p = self.pairs.get((queue, task))
        if p is None:
            p = self.pairs[(queue, task)] = Pair()
            self._by_queue.setdefault(queue, {})[task] = p
        return p

    def claimed(self, leases: Sequence[Lease], now: float) -> None:
        """A batch the worker claimed at ``now`` (read once a batch): attempts started,
        their queue waits, leases held."""
        pairs, held, buckets = self.pairs, self.leases, self.histograms
        task: str | None
        # A batch is one queue's and mostly one task's: its pair is looked up once per run
        # of the same (queue, task), and its starts and leases held added once per run.
        queue, task = "", None
        p = _NO_PAIR  # the first lease looks its own up (and its wait histogram)
        wait: Histogram
        run = 0  # leases of the current (queue, task) not yet counted
        for lease in leases:
            if lease.task != task or lease.queue != queue:
                if run:
                    p.started += run
                    held[queue] += run
                    run = 0
                queue, task = lease.queue, lease.task
                try:
                    p = pairs[(queue, task)]
                except KeyError:
                    p = self.pair(queue, task)
                wait = p.wait
            run += 1
            waited = now - lease.created_at
            if not waited > 0.0:  # a clock behind the store's (or equal): no wait
                waited = 0.0
            if buckets:
                wait.counts[0 if waited < FIRST else bisect_left(BUCKETS, waited)] += 1
            wait.total += waited
        if run:
            p.started += run
            held[queue] += run

    def finished(self, queue: str, task: str, began: float, kind: str | None) -> None:
        """An attempt of a claimed job (``began``: the claim's time) ended. ``kind``: the
        event of the outcome the store took (job.completed, job.failed, job.retrying,
        job.cancelled); job.queued (put back at shutdown) or None (no outcome landed: the
        lease was lost) count no outcome."""
        self.leases[queue] -= 1
        if kind is None or kind == "job.queued":
            return
        p = self._by_queue[queue][task]  # made by claimed()
        p.finished[OUTCOMES[kind]] += 1
        if not self.histograms:
            return
        ran = time.time() - began
        run = p.run
        run.counts[0 if ran < FIRST else bisect_left(BUCKETS, ran)] += 1  # most jobs: no call
        run.total += ran

    def stalled(self, queue: str, task: str) -> None:
        self.recoveries += 1
        self.pair(queue, task).stalled += 1

    def cron_fired(self, schedule: str, task: str) -> None:
        self.cron[(schedule, task)] = self.cron.get((schedule, task), 0) + 1

    def to_json(self) -> dict[str, Any]:
        """A snapshot another process can add up (multi-process export). The exporter's
        thread calls it while the loop counts: each dict is copied in one step first."""
        return {
            "pairs": [
                {
                    "queue": q,
                    "task": t,
                    "started": p.started,
                    "finished": dict(p.finished),
                    "stalled": p.stalled,
                    "run": p.run.to_json(),
                    "wait": p.wait.to_json(),
                }
                for (q, t), p in list(self.pairs.items())
            ],
            "leases": dict(self.leases),
            "recoveries": self.recoveries,
            "cron": [{"schedule": s, "task": t, "n": n} for (s, t), n in list(self.cron.items())],
        }
