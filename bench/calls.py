"""``python -m bench.calls``: Python function calls per no-op job in one worker process, a
count that does not depend on the machine's load (unlike CPU time), for comparing commits.

python -m bench.calls --url memory:// --jobs 20000
python -m bench.calls --enqueue                    # calls per app.enqueue() (one by one)
PYTHONPATH=/tmp/base/src python -m bench.calls     # an exported older tree (git archive)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
from typing import Any

from workhorse import Workhorse


async def count(
    url: str, jobs: int, enqueue: bool = False
) -> tuple[float, list[tuple[float, str]]]:
    """Calls per job in total, and the functions called at least once a job: of the
    worker running them, or (``enqueue``) of the producer's ``app.enqueue`` calls."""
    app = Workhorse(url, poll_interval=0.05)

    @app.task
    async def noop() -> None:
        return None

    async with app:
        profile = cProfile.Profile()
        if enqueue:
            await app.enqueue("noop")  # the first call opens and starts what is lazy
            profile.enable()
            for _ in range(jobs):
                await app.enqueue("noop")
            profile.disable()
        else:
            await app.enqueue_many("noop", [None] * jobs)
            worker = app.worker(burst=True, concurrency=50)
            profile.enable()
            await worker.run()
            profile.disable()
        drop = getattr(app.backend, "drop", None)
        if drop is not None:
            await drop()
    loaded: Any = pstats.Stats(profile)  # its .stats table is not in typeshed
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = loaded.stats
    total = sum(row[1] for row in stats.values()) / jobs
    per_job = sorted(
        ((row[1] / jobs, f"{os.path.basename(k[0])}:{k[1]} {k[2]}") for k, row in stats.items()),
        reverse=True,
    )
    return total, [(n, where) for n, where in per_job if n >= 1.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="memory://")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--list", action="store_true", help="every function called per job")
    parser.add_argument("--enqueue", action="store_true", help="the producer's calls instead")
    args = parser.parse_args()
    if "prefix=" not in args.url and args.url.startswith("redis"):
        args.url += ("&" if "?" in args.url else "?") + f"prefix=calls{os.getpid()}"
    total, rows = asyncio.run(count(args.url, args.jobs, args.enqueue))
    what = "enqueue() calls" if args.enqueue else "no-op jobs"
    print(f"{total:.1f} calls per job ({args.jobs:,} {what}, {args.url.split('?')[0]})")
    if args.list:
        for n, where in rows:
            print(f"{n:7.2f}  {where}")


if __name__ == "__main__":
    main()
