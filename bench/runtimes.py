"""``python -m bench.runtimes``: what running a job elsewhere costs.

One worker on the memory backend runs no-op jobs inline (a coroutine on its loop), in the
warm process pool, and as commands (python3 and node, through the helpers in
examples/command/, kept warm). Jobs are enqueued first, then timed from the first claim
to the last finish. The figure that matters is the overhead per job against inline:
``1/rate(runtime) - 1/rate(inline)``, at concurrency 1 (one job at a time, so it is the
added latency) and at concurrency 4.

    python -m bench.runtimes                # writes bench/results/runtimes.json
    python -m bench.runtimes --docs         # and the table in docs/runtimes.md
    python -m bench.runtimes --jobs 500 --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from workhorse import Workhorse
from workhorse.job import Event

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "examples" / "command"
RESULTS = ROOT / "bench" / "results" / "runtimes.json"

PY_NOOP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from workhorse_job import run; run(lambda job, ctx: None)"
)
NODE_NOOP = "require(process.argv[1] + '/workhorse-job').run(async () => null)"


async def noop(data: Any = None) -> None:
    return None


def sync_noop(data: Any = None) -> None:
    return None


def command_stub(data: Any = None) -> None:
    raise AssertionError("a command task runs its program")


def build() -> Workhorse:
    app = Workhorse("memory://", poll_interval=0.05, keep_completed=None)
    app.add_task(noop, name="inline")
    app.add_task(sync_noop, name="process", runtime="process")
    app.add_task(
        command_stub,
        name="python",
        runtime="command",
        command=["python3", "-c", PY_NOOP, str(HELPERS)],
    )
    node = shutil.which("node")
    if node is not None:
        app.add_task(
            command_stub,
            name="node",
            runtime="command",
            command=[node, "-e", NODE_NOOP, str(HELPERS)],
        )
    return app


async def rate(app: Workhorse, task: str, jobs: int, concurrency: int) -> float:
    """Jobs per second for ``jobs`` no-op jobs of ``task`` with a warm worker."""
    worker = app.worker(queues=["default"], concurrency=concurrency)
    runner = asyncio.create_task(worker.run())
    try:
        for _ in range(2):  # warm: children started, programs said hello
            await asyncio.gather(*(app.run(task, None, timeout=60) for _ in range(concurrency)))
        done = asyncio.Event()
        finished = 0

        def count(event: Event) -> None:
            nonlocal finished
            finished += 1
            if finished == jobs:
                done.set()

        # Counting finishes on the bus costs the same for every runtime; waiting on each
        # job would add a store round trip per job to the figure.
        app.bus.on("job.completed", count)
        try:
            await app.enqueue_many(task, [None] * jobs)
            start = time.perf_counter()
            await asyncio.wait_for(done.wait(), 300)
            elapsed = time.perf_counter() - start
        finally:
            app.bus.off("job.completed", count)
    finally:
        worker.stop()
        worker.stop()
        await runner
    counts = await app.counts(["default"])
    left = sum(n for state, n in counts.get("default", {}).items() if state != "completed")
    if left:
        raise RuntimeError(f"{left} job(s) of {task} not completed: {counts}")
    return jobs / elapsed


async def measure(jobs: int, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobs": jobs,
        "repeat": repeat,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "backend": "memory",
        "runs": {},
    }
    for concurrency in (1, 4):
        rates: dict[str, float] = {}
        app = build()
        await app.open()
        try:
            for task in ("inline", "process", "python", "node"):
                if task not in app.tasks:
                    continue
                n = jobs if task in ("inline", "process") else max(jobs // 2, 50)
                samples = [await rate(app, task, n, concurrency) for _ in range(repeat)]
                rates[task] = statistics.median(samples)
                await app.purge()
        finally:
            await app.close()
        base = 1 / rates["inline"]
        out["runs"][str(concurrency)] = {
            task: {
                "jobs_per_s": round(r, 1),
                "overhead_ms_per_job": round((1 / r - base) * 1000, 3),
            }
            for task, r in rates.items()
        }
    return out


DOCS = ROOT / "docs" / "runtimes.md"
START, END = "<!-- runtimes:start -->", "<!-- runtimes:end -->"


def table(result: dict[str, Any]) -> str:
    lines = [
        "| concurrency | runtime | jobs/s | overhead per job |",
        "| --- | --- | --- | --- |",
    ]
    for concurrency, runs in result["runs"].items():
        for task, r in runs.items():
            name = {"python": "command (python3)", "node": "command (node)"}.get(task, task)
            over = "—" if task == "inline" else f"{r['overhead_ms_per_job']:.3f} ms"
            lines.append(f"| {concurrency} | {name} | {r['jobs_per_s']:,.0f} | {over} |")
    return "\n".join(lines)


def write_docs(result: dict[str, Any]) -> None:
    """Put the figures between the markers in docs/runtimes.md."""
    text = DOCS.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOCS.write_text(f"{head}{START}\n{table(result)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000, help="jobs per measurement")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--docs", action="store_true", help="also update docs/runtimes.md")
    args = p.parse_args(argv)
    result = asyncio.run(measure(args.jobs, args.repeat))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    if args.docs:
        write_docs(result)
    print(f"concurrency  runtime   jobs/s   overhead ms/job   (memory backend, {args.jobs} jobs)")
    for concurrency, runs in result["runs"].items():
        for task, r in runs.items():
            print(
                f"{concurrency:>11}  {task:<8} {r['jobs_per_s']:>8.0f}   "
                f"{r['overhead_ms_per_job']:>15.3f}"
            )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
