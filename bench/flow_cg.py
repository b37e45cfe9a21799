"""``python -m bench.flow_cg SHAPE MODE N [URL]``: one of bench.flows' phases for callgrind.

SHAPE ``flow`` starts N/4 runs of bench.flows' 4-step chain, ``diamond`` N/4 runs of a
4-step diamond (d1 -> d2, d3 -> d4 joining both), ``chain`` enqueues N/4 chains of plain
jobs, ``plain`` N no-op jobs; MODE ``run`` then runs them with bench.flows'
``timed_run``, ``setup`` only collects the garbage; ``cpu`` and ``cpu-nogc`` run them
and print the worker's CPU per job, the cyclic GC on or off (after the harness's
collection); ``collections`` runs them and prints the collections in the window per
generation, with the objects each walked (a ``gc.callbacks`` hook). Instructions per job are
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
from collections import Counter

from bench.flows import CHAIN, build, timed_run
from workhorse import Workhorse


async def phase(shape: str, mode: str, jobs: int, url: str) -> None:
    app = build(url)
    if shape == "diamond":
        diamond(app)
    async with app:
        if shape in ("flow", "diamond"):
            jobs = jobs // CHAIN * CHAIN
            for n in range(jobs // CHAIN):
                await app.flows.start("chain" if shape == "flow" else "diamond", n)
        elif shape == "chain":
            jobs = jobs // CHAIN * CHAIN
            await app.enqueue_many("link", [[n, 1] for n in range(jobs // CHAIN)])
        else:
            for start in range(0, jobs, 1000):
                await app.enqueue_many("noop", range(start, min(jobs, start + 1000)))
        if mode == "setup":
            gc.collect()
            return
        if mode == "collections":
            await walks(app, shape, jobs)
            return
        if mode == "cpu-nogc":
            gc.disable()  # timed_run's own collection still runs
        try:
            _, cpu = await timed_run(app, jobs)
        finally:
            gc.enable()
        if mode != "run":
            print(f"{shape} N={jobs} {mode}: {cpu / jobs * 1e6:.1f} µs/job")


def diamond(app: Workhorse) -> None:
    """A closed flow of CHAIN (4) steps with a join: its last step reads its inputs' jobs
    (docs/flows.md, the run's end)."""

    @app.task(name="d1", flow="diamond", entry=True)
    async def d1(n: int) -> int:
        return n

    @app.task(name="d2", flow="diamond", subscribes=["step:d1"])
    async def d2(n: int) -> int:
        return n

    @app.task(name="d3", flow="diamond", subscribes=["step:d1"])
    async def d3(n: int) -> int:
        return n

    @app.task(name="d4", flow="diamond", subscribes=["step:d2", "step:d3"])
    async def d4(inputs: dict[str, int]) -> int:
        return inputs["step:d2"]


async def walks(app: Workhorse, shape: str, jobs: int) -> None:
    """The window's collections per generation, and the objects they walked."""
    runs: Counter[int] = Counter()
    walked: Counter[int] = Counter()

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            g = info["generation"]
            runs[g] += 1
            walked[g] += sum(len(gc.get_objects(i)) for i in range(g + 1))

    gc.collect()
    tracked = len(gc.get_objects())
    gc.callbacks.append(seen)
    try:
        await timed_run(app, jobs)
    finally:
        gc.callbacks.remove(seen)
    print(f"{shape} N={jobs}: {tracked} tracked before the window")
    for g in sorted(runs):
        print(f"  generation {g}: {runs[g]} collections, {walked[g] / jobs:.1f} objects/job")


def cli(argv: list[str]) -> None:
    shape, mode, jobs = argv[0], argv[1], int(argv[2])
    asyncio.run(phase(shape, mode, jobs, argv[3] if len(argv) > 3 else "memory://"))


if __name__ == "__main__":
    cli(sys.argv[1:])
