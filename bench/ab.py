"""``python -m bench.ab``: the same measurements on an older commit and on this tree,
alternated, so a change is judged against its base on the same machine in the same minutes.

python -m bench.ab --base HEAD~3 --backends memory,redis --measure noop,roundtrip --rounds 4

The base is exported (``git archive``) to a temporary directory and gets this tree's
``bench/`` package, so both sides run the same harness and only workhorse differs. Each
round runs every measurement once on each side, the side going first alternating between
rounds. On a shared machine compare the ratios and the CPU per job, not the rates alone.

Each figure also shows every round's own new/base ratio (min-max) and a verdict: behind
when every round of the new tree was worse than its base, ahead when every one was better,
else within the rounds' spread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.measure import BACKENDS, ROOT, Servers, sizes_for

MEASURES = ("enqueue_one", "enqueue_concurrent", "enqueue_bulk", "noop", "sleep", "roundtrip")
# The figures worth comparing per measurement; higher_is_better marks the rates.
FIGURES = {
    "enqueue_one": (("rate", True), ("client_cpu_us", False)),
    "enqueue_concurrent": (("rate", True), ("client_cpu_us", False)),
    "enqueue_bulk": (("rate", True), ("client_cpu_us", False)),
    "noop": (("rate", True), ("worker_cpu_us", False), ("rss_mb", False)),
    "sleep": (("rate", True), ("steady_rate", True), ("worker_cpu_us", False)),
    "roundtrip": (("p50_ms", False), ("p99_ms", False), ("wait_p50_ms", False)),
}


def export(rev: str, into: Path) -> Path:
    """``rev``'s tree with this tree's bench/ package in it."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    shutil.copytree(ROOT / "bench", into / "bench", ignore=shutil.ignore_patterns("results"))
    return into


def one_side(tree: Path, kind: str, measure: str, quick: bool) -> dict[str, Any]:
    """One measurement in a fresh interpreter that imports ``tree``'s workhorse."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tree / "src"), str(tree)))}
    args = [sys.executable, "-m", "bench.ab", "--one", kind, measure]
    if quick:
        args.append("--quick")
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, timeout=900)
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-800:]}
    figures: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return figures


async def _measure_here(kind: str, name: str, quick: bool) -> dict[str, Any]:
    from bench.__main__ import one

    return await one(kind, name, sizes_for(kind, quick), Servers(), lambda _d, _t: None)


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--base", default="HEAD", help="the commit to compare with (default HEAD)")
    p.add_argument("--backends", default="memory", help=f"from: {','.join(BACKENDS)}")
    p.add_argument("--measure", default="noop", help=f"from: {','.join(MEASURES)}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small sizes (checks the harness)")
    p.add_argument("--one", nargs=2, metavar=("BACKEND", "MEASURE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        figures = asyncio.run(_measure_here(args.one[0], args.one[1], args.quick))
        figures.pop("rss_trace", None)
        sys.stdout.write(orjson.dumps(figures).decode() + "\n")
        return
    kinds = [k for k in args.backends.split(",") if k]
    names = [m for m in args.measure.split(",") if m]
    for bad in [k for k in kinds if k not in BACKENDS] + [m for m in names if m not in MEASURES]:
        raise SystemExit(f"unknown backend or measurement {bad!r}")
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="workhorse-ab-") as tmp:
        sides = {"base": export(args.base, Path(tmp)), "new": ROOT}
        for r in range(args.rounds):
            order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
            for kind in kinds:
                for name in names:
                    for side in order:
                        fig = one_side(sides[side], kind, name, args.quick)
                        results.setdefault((kind, name, side), []).append(fig)
                        shown = {k: round(v, 2) for k, v in fig.items() if isinstance(v, float)}
                        print(f"round {r + 1} {kind} {name} {side}: {fig.get('error') or shown}",
                              file=sys.stderr, flush=True)  # fmt: skip
    print(f"\nbase {args.base} against this tree, medians of {args.rounds} round(s):\n")
    print("| backend | measurement | figure | base | new | new/base | rounds' new/base | behind? |")
    print("| --- | --- | --- | --: | --: | --: | --: | --- |")
    for kind in kinds:
        for name in names:
            for figure, higher in FIGURES[name]:
                runs = [results[(kind, name, side)] for side in ("base", "new")]
                pair = []
                for side_runs in runs:
                    vals = [f[figure] for f in side_runs if figure in f]
                    pair.append(statistics.median(vals) if vals else float("nan"))
                ratio = pair[1] / pair[0] if pair[0] else float("nan")
                each = paired(runs[0], runs[1], figure)
                spread = f"{min(each):.2f}-{max(each):.2f}" if each else "-"
                print(f"| {kind} | {name} | {figure} | {_num(pair[0])} | {_num(pair[1])} "
                      f"| {ratio:.2f} | {spread} | {verdict(each, higher)} |")  # fmt: skip


def paired(base: list[dict[str, Any]], new: list[dict[str, Any]], figure: str) -> list[float]:
    """new/base of each round: the two sides of a round ran minutes apart at most, so a
    change shows as ratios on one side of 1, while the machine's swings move both sides."""
    return [
        n[figure] / b[figure]
        for b, n in zip(base, new, strict=True)
        if figure in b and figure in n and b[figure]
    ]


def verdict(each: list[float], higher_is_better: bool) -> str:
    """Behind when every round's ratio is on the worse side of 1 (no round of the new
    tree as good as its base), ahead when every one is better, else within the
    rounds' spread: a median alone does not tell a change from the machine's noise."""
    if len(each) < 2:
        return "-"
    worse = [r < 1 if higher_is_better else r > 1 for r in each]
    if all(worse):
        return "**behind**"
    if not any(worse) and all(r != 1 for r in each):
        return "ahead"
    return "within spread"


if __name__ == "__main__":
    main()
