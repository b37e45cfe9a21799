"""``python -m bench.rss``: where a worker process's memory is, phase by phase and mapping
by mapping, on this tree and (``--base REV``) an older one, side by side.

python -m bench.rss --backend postgres --base 5da9aea --rounds 2

The child runs ``bench.child``'s shape (``n`` pre-enqueued no-ops, one worker, concurrency
10, the loop ``workhorse worker`` picks) and reads VmRSS after each phase: the interpreter
with the harness's own imports (asyncio, orjson), ``import workhorse`` (with
``bench.child``), inside the loop, the app opened, the worker made, the jobs run and the
worker stopped (where ``bench.ab``'s ``rss_mb`` reads; its child process differs, so its
figure is not this one, the difference between two trees is). At the end the child sums
``/proc/self/smaps``' Rss per mapping (a library's file name, ``[heap]``, ``[anon]``) and
lists ``sys.modules``. The base is exported as ``bench.ab`` does (its ``src`` with this
tree's ``bench/``), so only workhorse differs; each side fills its own fresh store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

PHASES = ("harness", "import", "loop", "open", "worker", "run")
_TAIL = 25  # mappings shown, largest difference first


def rss_mb() -> float:
    # bench.child's own reader would import workhorse before the first mark.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def smaps_kb() -> dict[str, int]:
    """Resident KB per mapping: a file's base name, or ``[heap]``, ``[stack]``, ``[anon]``."""
    sums: dict[str, int] = {}
    name = "[anon]"
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if parts[0] == "Rss:":
                sums[name] = sums.get(name, 0) + int(parts[1])
            elif not parts[0].endswith(":"):  # a mapping's header: address range first
                path = parts[5] if len(parts) > 5 else "[anon]"
                name = os.path.basename(path) if path.startswith("/") else path
    return sums


async def _work(url: str, n: int, marks: dict[str, float]) -> None:
    from bench.tasks import QUEUE, make_app

    marks["loop"] = rss_mb()
    app = make_app(url)
    await app.open()
    try:
        marks["open"] = rss_mb()
        worker = app.worker(queues={QUEUE: 10})
        marks["worker"] = rss_mb()
        running = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 120
        while worker.processed < n and not running.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        worker.stop()
        await running
        if worker.processed < n:
            raise RuntimeError(f"{worker.processed} of {n} jobs ran")
        marks["run"] = rss_mb()
    finally:
        await app.close()


def child(url: str, n: int) -> None:
    marks = {"harness": rss_mb()}
    from bench.child import loop_run  # imports workhorse

    marks["import"] = rss_mb()
    loop_run()(_work(url, n, marks))
    out = {"marks": marks, "smaps": smaps_kb(), "modules": sorted(sys.modules)}
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


def one_side(tree: Path, kind: str, n: int) -> dict[str, Any]:
    """One measurement on ``tree``: its own workhorse fills the store (its schema version)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tree / "src"), str(tree)))}
    args = [sys.executable, "-m", "bench.rss", "--one", kind, str(n)]
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-800:])
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return result


async def _fill_and_run(kind: str, n: int) -> dict[str, Any]:
    """Fill a fresh store, then run the child in a fresh interpreter on the same path."""
    from bench.measure import Servers, fresh_store
    from bench.tasks import NOOP, make_app

    async with fresh_store(kind, Servers()) as url:
        async with make_app(url) as app:
            for start in range(0, n, 1000):
                await app.enqueue_many(NOOP, [None] * min(1000, n - start))
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.rss", "--child", url, str(n)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err.decode(errors="replace")[-800:])
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return result


def report(runs: dict[str, list[dict[str, Any]]]) -> None:
    sides = list(runs)
    print("| phase | " + " | ".join(f"{s} (MB)" for s in sides) + " |")
    print("| --- |" + " --: |" * len(sides))
    for phase in PHASES:
        cells = [", ".join(f"{r['marks'][phase]:.2f}" for r in runs[s]) for s in sides]
        print(f"| {phase} | " + " | ".join(cells) + " |")
    last = {s: runs[s][-1] for s in sides}
    names = set().union(*(last[s]["smaps"] for s in sides))

    def spread(name: str) -> int:
        values: list[int] = [last[s]["smaps"].get(name, 0) for s in sides]
        return max(values) - min(values)

    print("\n| mapping (last round, KB) | " + " | ".join(sides) + " |")
    print("| --- |" + " --: |" * len(sides))
    for name in sorted(names, key=lambda m: (-spread(m), m))[:_TAIL]:
        print(f"| {name} | " + " | ".join(str(last[s]["smaps"].get(name, 0)) for s in sides) + " |")
    if len(sides) == 2:
        a, b = (set(last[s]["modules"]) for s in sides)
        print(f"\nmodules: {sides[0]} {len(a)}, {sides[1]} {len(b)}")
        print(f"only {sides[0]}: {' '.join(sorted(a - b)) or '-'}")
        print(f"only {sides[1]}: {' '.join(sorted(b - a)) or '-'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.rss", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    # A durable store: the parent fills it and the child's worker reads it.
    p.add_argument("--backend", default="postgres", choices=("sqlite", "redis", "postgres"))
    p.add_argument("--base", help="also measure this commit, alternated with this tree")
    p.add_argument("--n", type=int, default=10_000, help="no-op jobs the worker runs")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    p.add_argument("--one", nargs=2, metavar=("BACKEND", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        result = asyncio.run(_fill_and_run(args.one[0], int(args.one[1])))
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    from bench.ab import export
    from bench.measure import ROOT

    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="workhorse-rss-") as tmp:
        trees = {"new": ROOT} if not args.base else {"base": export(args.base, Path(tmp))}
        trees["new"] = ROOT
        for r in range(args.rounds):
            for side in list(trees) if r % 2 == 0 else list(trees)[::-1]:
                runs.setdefault(side, []).append(one_side(trees[side], args.backend, args.n))
                print(f"round {r + 1} {side}: {runs[side][-1]['marks']}", file=sys.stderr)
    report({s: runs[s] for s in trees})


if __name__ == "__main__":
    main()
