"""``python -m bench.flow_start``: what one ``app.flows.start`` costs against one
``app.enqueue`` on the same store: p50/p99 latency, one call at a time, and the store calls
per start (``bench.flows.count_calls``, by method). No worker runs: the runs only start.

- chain: bench.flows' 4-step chain flow (its entry is one plain step).
- fan: bench.flows' fan-out flow, whose runs keep a count of their live steps (a counter
  added before the entry is written).

``--base REV``: the same figures for ``REV``'s workhorse (exported as bench.ab does, with
this tree's bench/), the two sides alternating round by round; the medians over the
rounds are printed with their min-max, and the client process's CPU per call.

    python -m bench.flow_start --backends memory,sqlite,redis,postgres
    python -m bench.flow_start --backends sqlite,redis,postgres --base HEAD~3 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from bench import flows
from bench.ab import export
from bench.measure import Servers, fresh_store

WARMUP = 20


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    """p50 and p99 in ms of ``n`` calls made one after another, and the process's CPU per
    call in µs (SQLite's and memory's store work included: it runs in the process)."""
    lat = []
    cpu = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        await call(i)
        lat.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu
    lat.sort()
    return {
        "p50_ms": lat[n // 2] * 1e3,
        "p99_ms": lat[min(n - 1, n * 99 // 100)] * 1e3,
        "cpu_us": cpu / n * 1e6,
    }


async def measure(kind: str, n: int) -> dict[str, Any]:
    """One side's figures on a fresh store of ``kind``."""
    out: dict[str, Any] = {}
    async with fresh_store(kind, Servers()) as url:
        app = flows.build(url)
        async with app:
            for i in range(WARMUP):
                await app.flows.start("chain", i)
                await app.flows.start("fan", i)
                await app.enqueue("noop", i)
            out["start_chain"] = await timed(n, lambda i: app.flows.start("chain", i))
            out["start_fan"] = await timed(n, lambda i: app.flows.start("fan", i))
            out["enqueue"] = await timed(n, lambda i: app.enqueue("noop", i))
            calls = flows.count_calls(app.backend)
            for name in ("chain", "fan"):
                calls.clear()
                for i in range(WARMUP):
                    await app.flows.start(name, i)
                out[f"calls_{name}"] = {k: v / WARMUP for k, v in sorted(calls.items()) if v}
    return out


def side(tree: Path | None, kind: str, n: int) -> dict[str, Any]:
    """``measure`` in a fresh interpreter importing ``tree``'s workhorse (None: this one)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join((str(tree / "src"), str(tree)))
    args = [sys.executable, "-m", "bench.flow_start", "--one", kind, "--runs", str(n)]
    done = subprocess.run(args, env=env, capture_output=True, check=True)
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def report(kind: str, label: str, rounds: list[dict[str, Any]]) -> None:
    for m in ("start_chain", "start_fan", "enqueue"):
        figures = " ".join(
            f"{f} {spread([r[m][f] for r in rounds])}" for f in ("p50_ms", "p99_ms", "cpu_us")
        )
        print(f"{kind:8} {label:4} {m:11} {figures}")
    for name in ("chain", "fan"):
        calls = rounds[-1][f"calls_{name}"]
        total = sum(v for k, v in calls.items() if not k.startswith("("))
        print(f"{'':13} calls per {name} start {total:g}: {calls}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,sqlite,redis,postgres")
    parser.add_argument("--runs", type=int, default=300, help="calls timed per figure")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--base", help="a commit to compare with, round by round")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(orjson.dumps(asyncio.run(measure(args.one, args.runs))).decode())
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = None if args.base is None else export(args.base, Path(tmp))
        for kind in args.backends.split(","):
            got: dict[str, list[dict[str, Any]]] = {"new": [], "base": []}
            for r in range(args.rounds):
                order = [("new", None), ("base", base)]
                for label, tree in order if r % 2 == 0 else order[::-1]:
                    if label == "new" or base is not None:
                        got[label].append(side(tree, kind, args.runs))
            for label, rounds in got.items():
                if rounds:
                    report(kind, label, rounds)


if __name__ == "__main__":
    main()
