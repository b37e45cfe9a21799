"""``python -m bench.listings``: SQLite's listing pages with many finished jobs, few failed.

python -m bench.listings --jobs 200000

Fills a private SQLite file with ``--jobs`` jobs over four queues, finished (one in a
thousand failed, the rest completed, written in one UPDATE), then times ``query()`` of 50
jobs for each filter the dashboard and the REST listing use: the median of 20 calls, and
the keyset page after it. Run it with another tree's ``src`` first on ``PYTHONPATH`` to
compare (``git archive REV | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from typing import Any

from workhorse.backends.sqlite import SQLiteBackend
from workhorse.job import JobKey, JobState, NewJob, new_job_id

_FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("all queues, failed", {"state": JobState.FAILED}),
    ("one queue, failed", {"queue": "q1", "state": JobState.FAILED}),
    ("one queue", {"queue": "q1"}),
    ("all", {}),
]


async def run(jobs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        backend = SQLiteBackend(f"sqlite:///{tmp}/listings.db")
        await backend.open()
        for i in range(0, jobs, 1000):
            await backend.enqueue(
                [NewJob(new_job_id(), "t", f"q{i // 1000 % 4}", b"{}") for _ in range(1000)]
            )
        with sqlite3.connect(f"{tmp}/listings.db") as raw:
            raw.execute(
                "UPDATE wh_jobs SET finished_at = created_at, state = CASE WHEN rid % 1000 = 0 "
                "THEN 'failed' ELSE 'completed' END"
            )
        print(f"{'filter':22} {'p50 ms':>8} {'keyset page 2 ms':>17}")
        for label, kw in _FILTERS:
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                page = await backend.query(limit=50, **kw)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await backend.query(limit=50, after=JobKey.of(page[-1]), **kw)
            keyset = time.perf_counter() - t0
            print(f"{label:22} {statistics.median(times) * 1e3:8.2f} {keyset * 1e3:17.2f}")
        await backend.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.listings", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--jobs", type=int, default=200_000)
    args = p.parse_args()
    print("load average", os.getloadavg())
    asyncio.run(run(args.jobs))
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
