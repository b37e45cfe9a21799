"""``python -m bench.flows_list``: what a page of flow runs costs with many runs stored:
``app.flows.list(flow, limit=50)`` (the index of runs) against reading every run's record
and end marker, as the list did before the index (issue 15), in alternated rounds; the
dashboard's counts (the newest 1,000 runs), and a page of a state no run is in.

    python -m bench.flows_list --runs 10000                    # a fresh SQLite file
    python -m bench.flows_list --url redis://127.0.0.1:6379/9 --runs 10000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from workhorse import Workhorse
from workhorse.flows import RunRecord, keys, records


async def every_run(app: Workhorse, flow: str) -> list[RunRecord]:
    """The former list: every record and every end marker, filtered and sorted."""
    backend = app.backend
    runs = [RunRecord.loads(v) for v in (await backend.kv_scan(keys.runs_prefix())).values()]
    marks = await backend.kv_scan(keys.end_prefix())
    for r in runs:
        records.ended(r, marks.get(keys.end_key(r.id, r.gen)))
    runs = [r for r in runs if r.flow == flow]
    runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return runs[:50]


async def main(url: str, runs: int, rounds: int) -> None:
    app = Workhorse(url, poll_interval=0.05)

    @app.task(name="only", flow="one", entry=True)
    async def only(data: Any) -> Any:
        return data

    async with app:
        await app.flows.indexed()
        t0 = time.perf_counter()
        for i in range(runs):
            await app.flows.start("one", i)
        print(f"{runs} runs started in {time.perf_counter() - t0:.1f} s")
        page, before, rare, counted = [], [], [], []
        for _ in range(rounds):  # alternated: the machine's swings hit both alike
            t = time.perf_counter()
            new = await app.flows.list("one", limit=50)
            page.append(time.perf_counter() - t)
            t = time.perf_counter()
            old = await every_run(app, "one")
            before.append(time.perf_counter() - t)
            assert [r.id for r in new] == [r.id for r in old]
            t = time.perf_counter()
            await app.flows.counts()
            counted.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert await app.flows.list("one", "failed") == []  # reads every run of the flow
        rare.append(time.perf_counter() - t)
        print(f"page of 50 (index):        median {statistics.median(page) * 1e3:8.2f} ms")
        print(f"page of 50 (every record): median {statistics.median(before) * 1e3:8.2f} ms")
        print(f"counts (newest 1,000 runs): median {statistics.median(counted) * 1e3:8.2f} ms")
        print(f"page of a state no run is in (reads on to the end): {rare[0] * 1e3:.0f} ms")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url")
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=15)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(main(a.url or f"sqlite:///{d}/bench.db", a.runs, a.rounds))
