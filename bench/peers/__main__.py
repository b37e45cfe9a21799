"""``python -m bench.peers``: workhorse and the peers side by side, in one run.

python -m bench.peers                         # every peer, 3 repetitions, scale-out, charts
python -m bench.peers --peers huey,rq --repeat 1 --no-scaleout
python -m bench.peers --quick                 # tiny sizes: checks the harness, not speed

The peers run from .venv-peers (and .venv-peers-arq), created here from
bench/peers/requirements*.txt; the project's own install never needs them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import measure, report, scaleout
from bench.measure import ROOT, Servers
from bench.peers import render, runner

WORKHORSE_BACKENDS = ("redis", "postgres")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--peers", help="comma-separated, from: " + ",".join(runner.PEERS))
    p.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    p.add_argument(
        "--budget-min",
        type=float,
        default=20.0,
        help="if the first repetition shows the run would take longer, repeat fewer times "
        "(and say so in the report)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    p.add_argument("--no-scaleout", action="store_true")
    p.add_argument("--no-charts", action="store_true")
    p.add_argument("--json", help="default bench/results/peers.json (quick: peers-quick.json)")
    p.add_argument("--out", help="default docs/benchmarks-peers.md (quick: bench/results/)")
    p.add_argument("--img", help="chart directory (default docs/img; quick: bench/results)")
    p.add_argument(
        "--redis-url", default=os.environ.get("WORKHORSE_BENCH_REDIS", measure.DEFAULT_REDIS)
    )
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("WORKHORSE_BENCH_POSTGRES", measure.DEFAULT_POSTGRES),
    )
    args = p.parse_args(argv)
    if args.quick:
        args.repeat = 1
    stem = "bench/results/quick.peers" if args.quick else None  # quick.* is gitignored
    args.json = args.json or (f"{stem}.json" if stem else "bench/results/peers.json")
    args.out = args.out or (f"{stem}.md" if stem else "docs/benchmarks-peers.md")
    args.img = args.img or ("bench/results/quick.img" if stem else "docs/img")
    return args


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _shown(figures: dict[str, Any]) -> str:
    if figures.get("error"):
        return "FAILED: " + str(figures["error"]).splitlines()[0]
    if figures.get("unsupported"):
        return "n/a: " + str(figures["unsupported"])
    for key, unit in (("rate", "/s"), ("p50_ms", " ms p50")):
        if key in figures:
            return f"{figures[key]:,.1f}{unit}"
    return "?"


def summarize(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """``{entry: {"metric": median | None}}`` plus, per entry, why a figure is missing."""
    out: dict[str, Any] = {}
    for entry, measurements in runs.items():
        figures: dict[str, Any] = {}
        notes: dict[str, str] = {}
        for name, reps in measurements.items():
            for metric in render.METRIC_KEYS.get(name, ()):
                figures[f"{name}.{metric}"] = report.median_of(reps, metric)
            bad = [r for r in reps if r.get("error") or r.get("unsupported")]
            if bad and len(bad) == len(reps):
                first = bad[0]
                notes[name] = (
                    f"n/a: {first['unsupported']}"
                    if first.get("unsupported")
                    else "failed: " + str(first["error"]).splitlines()[0][:200]
                )
            elif bad:
                notes[name] = f"{len(bad)} of {len(reps)} repetitions failed"
        out[entry] = {"figures": figures, "notes": notes}
    return out


def ratios(summary: dict[str, Any]) -> dict[str, Any]:
    """Each workhorse figure against the best peer on its backend, same run."""
    out: dict[str, Any] = {}
    for kind in WORKHORSE_BACKENDS:
        mine = summary.get(f"workhorse/{kind}")
        if mine is None:
            continue
        rows = {}
        for metric, _, _ in render.METRICS:
            value = mine["figures"].get(metric)
            peers = [
                (entry.split("/")[0], s["figures"].get(metric))
                for entry, s in summary.items()
                if entry.endswith(f"/{kind}") and not entry.startswith("workhorse/")
            ]
            found = [(n, v) for n, v in peers if isinstance(v, int | float)]
            if not found:
                continue
            lower = metric.endswith(("_ms", "_us", "_mb"))  # time, CPU, memory
            name, best = (min if lower else max)(found, key=lambda item: item[1])
            factor = None
            if isinstance(value, int | float) and value > 0 and best > 0:
                factor = best / value if lower else value / best
            rows[metric] = {"workhorse": value, "peer": name, "best": best, "factor": factor}
        out[kind] = rows
    return out


def link_from_benchmarks_md(out: str) -> None:
    """docs/benchmarks.md is rewritten whole by ``python -m bench``: add (again) the
    one-paragraph section that points to the side-by-side page, after its intro."""
    main = ROOT / "docs" / "benchmarks.md"
    target = Path(out)
    if not main.exists() or target.parent.resolve() != main.parent.resolve():
        return
    text = main.read_text()
    if target.name in text:
        return
    section = (
        "## Side by side with the peers\n\n"
        f"arq, SAQ, RQ, Dramatiq, Celery, Huey, taskiq and Procrastinate measured in one "
        f"run with workhorse, with ratios, charts and scale-out: [{target.name}]"
        f"({target.name}) (`python -m bench.peers`). The peer figures quoted at the end "
        "of this page are from an earlier study.\n\n"
    )
    anchor = "## This run"
    text = text.replace(anchor, section + anchor, 1) if anchor in text else text + "\n" + section
    main.write_text(text)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    servers = Servers(redis=args.redis_url, postgres=args.postgres_url)
    peers = [p.strip() for p in (args.peers or ",".join(runner.PEERS)).split(",") if p.strip()]
    unknown = [p for p in peers if p not in runner.PEERS]
    if unknown:
        raise SystemExit(f"unknown peer(s) {unknown}; choose from {', '.join(runner.PEERS)}")

    failed: dict[str, str] = {}  # peer -> why it is not measured at all
    venv_problem: dict[str, str | None] = {}
    for peer in peers:
        _, _, venv, req = runner.PEERS[peer]
        if venv not in venv_problem:
            venv_problem[venv] = runner.ensure_venv(venv, req, log)
        if venv_problem[venv]:
            failed[peer] = f"install failed: {venv_problem[venv]}"
    info: dict[str, Any] = {}
    for peer in peers:
        if peer in failed:
            continue
        backend = runner.PEERS[peer][0]
        server = servers.redis if backend == "redis" else servers.postgres
        if not measure.reachable(server):
            failed[peer] = f"{backend} is not reachable at {server}"
            continue
        info[peer] = runner.describe(peer)
        if info[peer].get("error"):
            failed[peer] = f"does not import: {info[peer]['error']}"
    kinds = [k for k in WORKHORSE_BACKENDS if measure.unavailable(k, servers) is None]
    for k in WORKHORSE_BACKENDS:
        if k not in kinds:
            failed[f"workhorse/{k}"] = str(measure.unavailable(k, servers))
    for who, why in failed.items():
        log(f"not measured: {who}: {why}")

    entries = [f"workhorse/{k}" for k in kinds] + [
        f"{p}/{runner.PEERS[p][0]}" for p in peers if p not in failed
    ]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        e: {m: [] for m in runner.MEASUREMENTS} for e in entries
    }
    repeat, note = args.repeat, None
    for rep in range(args.repeat):
        if rep >= repeat:
            break
        for entry in entries:
            library, kind = entry.split("/")
            for name in runner.MEASUREMENTS:
                if library == "workhorse":
                    fig, secs = runner.timed(
                        runner.measure_workhorse, kind, name, servers, args.quick
                    )
                else:
                    store = runner.Store(library, servers)
                    sizes = runner.sizes_for(library, args.quick)
                    fig, secs = runner.timed(runner.measure_peer, library, name, store, sizes)
                runs[entry][name].append(fig)
                log(f"[{rep + 1}/{repeat}] {entry} {name}: {_shown(fig)} ({secs:.0f} s)")
        if rep == 0 and args.repeat > 1:
            one = time.monotonic() - started
            fits = int((args.budget_min * 60 - (0 if args.no_scaleout else 150)) // one)
            if fits < args.repeat:
                repeat = max(1, fits)
                note = (
                    f"one repetition took {one / 60:.1f} min, so {repeat} repetition(s) "
                    f"instead of {args.repeat} to stay near {args.budget_min:.0f} min"
                )
                log(note)

    scale: dict[str, Any] = {}
    if not args.no_scaleout and kinds:
        import asyncio

        scale = asyncio.run(
            scaleout.run(
                kinds,
                servers,
                repeat=min(repeat, 3),
                jobs={"redis": 2_000, "postgres": 1_000} if args.quick else None,
                log=log,
            )
        )

    summary = summarize(runs)
    raw = {
        "meta": {
            "command": "python -m bench.peers"
            + ("" if len(sys.argv) < 2 else " " + shlex.join(sys.argv[1:])),
            "repeat": repeat,
            "repeat_asked": args.repeat,
            "repeat_note": note,
            "quick": args.quick,
            "machine": report.machine_info(),
            "peers": info,
            "failed": failed,
            "minutes": (time.monotonic() - started) / 60,
            "sizes": {
                p: runner.sizes_for(p, args.quick).__repr__() for p in peers if p not in failed
            },
            "workhorse_sizes": {k: repr(measure.sizes_for(k, args.quick)) for k in kinds},
        },
        "runs": runs,
        "scaleout": scale,
        "summary": summary,
        "ratios": ratios(summary),
    }
    js = Path(args.json)
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2) + b"\n")
    charts: list[str] = []
    if not args.no_charts:
        charts, problem = draw(js, Path(args.img))
        if problem:
            log(f"charts failed: {problem}")
            raw["meta"]["charts_error"] = problem
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render.render(raw, charts, out))
    if not args.quick:
        link_from_benchmarks_md(args.out)
    for kind, rows in raw["ratios"].items():
        for metric, row in rows.items():
            factor = row["factor"]
            log(
                f"workhorse/{kind} {metric}: {report._fmt(row['workhorse'])} vs "
                f"{row['peer']} {report._fmt(row['best'])}" + (_verdict(factor) if factor else "")
            )
    log(f"wrote {out}, {js}" + (f" and {len(charts)} charts" if charts else ""))


def _verdict(factor: float) -> str:
    # factor > 1: workhorse is better by that much; below 1 the peer is.
    if factor >= 1:
        return f" -> workhorse better by {factor:.2f}x"
    return f" -> workhorse worse by {1 / factor:.2f}x"


def draw(js: Path, img: Path) -> tuple[list[str], str | None]:
    """bench/charts.py needs matplotlib, which lives in .venv-peers only."""
    python = ROOT / ".venv-peers" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "bench.charts", str(js), str(img)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        return [], (done.stderr.strip().splitlines() or ["no output"])[-1]
    return [line for line in done.stdout.splitlines() if line.endswith(".png")], None


if __name__ == "__main__":
    main()
