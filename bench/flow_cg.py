"""``python -m bench.flow_cg SHAPE MODE N [URL]``: one of bench.flows' phases for callgrind.

SHAPE ``flow`` starts N/4 runs of bench.flows' 4-step chain, ``chain`` enqueues N/4 chains
of plain jobs, ``plain`` N no-op jobs; MODE ``run`` then runs them with bench.flows'
``timed_run``, ``setup`` only collects the garbage. Instructions per job are
``(run - setup) / N``, each side counted by callgrind with the worker's timers out of the
way (the eighth pass's method, docs/profiles.md)::

    export PYTHONHASHSEED=0 WORKHORSE_FLOW_SWEEP_INTERVAL=100000 \\
        WORKHORSE_RECLAIM_INTERVAL=100000 WORKHORSE_HEARTBEAT_INTERVAL=100000
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.flow_cg flow run 8000        # then: flow setup 8000
"""

from __future__ import annotations

import asyncio
import gc
import sys

from bench.flows import CHAIN, build, timed_run


async def phase(shape: str, mode: str, jobs: int, url: str) -> None:
    app = build(url)
    async with app:
        if shape == "flow":
            jobs = jobs // CHAIN * CHAIN
            for n in range(jobs // CHAIN):
                await app.flows.start("chain", n)
        elif shape == "chain":
            jobs = jobs // CHAIN * CHAIN
            await app.enqueue_many("link", [[n, 1] for n in range(jobs // CHAIN)])
        else:
            for start in range(0, jobs, 1000):
                await app.enqueue_many("noop", range(start, min(jobs, start + 1000)))
        if mode == "run":
            await timed_run(app, jobs)
        else:
            gc.collect()


def cli(argv: list[str]) -> None:
    shape, mode, jobs = argv[0], argv[1], int(argv[2])
    asyncio.run(phase(shape, mode, jobs, argv[3] if len(argv) > 3 else "memory://"))


if __name__ == "__main__":
    cli(sys.argv[1:])
