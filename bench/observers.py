"""``python -m bench.observers``: the worker's per-job cost of counting for metrics (the
tally that the Prometheus exporter and the store's job counters read), in microseconds,
without a store: the part of ``python -m bench.ab`` that the noise of a shared machine
cannot hide."""

from __future__ import annotations

import argparse
import statistics
import time

from workhorse.job import Lease
from workhorse.observability.tally import Tally

BATCH = 50  # leases per claim, as a worker at concurrency 50 takes them


def per_job_us(n: int) -> float:
    """The worker's calls: one per claimed batch, one per attempt (worker/worker.py)."""
    tally = Tally()
    leases = [
        Lease(f"{i:032x}", "token", "noop", "default", b"null", 1, 1, None, 30.0, time.time())
        for i in range(n)
    ]
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        batch = leases[i : i + BATCH]
        now = time.time()  # the worker reads it once per claimed batch
        tally.claimed(batch, now)
        for lease in batch:
            tally.finished(lease.queue, lease.task, now, "job.completed")
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    figures = [per_job_us(args.jobs) for _ in range(args.rounds)]
    print(
        f"metrics tally: {statistics.median(figures):.2f} us per job "
        f"(median of {args.rounds} rounds of {args.jobs:,} jobs; min {min(figures):.2f})"
    )


if __name__ == "__main__":
    main()
