"""``python -m bench``: measure workhorse on each backend and write docs/benchmarks.md.

python -m bench                                  # every backend that is ready here
python -m bench --backends memory,sqlite --repeat 5
python -m bench --quick --backends memory        # seconds: the smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from bench import measure, profile, report
from bench.measure import BACKENDS, DEFAULT_POSTGRES, DEFAULT_REDIS, Servers, Sizes

UNAVAILABLE = 3  # exit status: a backend asked for by name cannot run here
MEASUREMENTS = ("enqueue_one", "enqueue_bulk", "noop", "sleep", "roundtrip")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--backends",
        help="comma-separated, from: "
        + ",".join(BACKENDS)
        + " (default: each whose module exists and whose server is reachable)",
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="runs per figure; the median is reported (default 3)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one run, no profile: checks the harness, not speed",
    )
    p.add_argument(
        "--out",
        help="the markdown report (default docs/benchmarks.md; bench/results/quick.md "
        "with --quick, so a smoke run never overwrites the real figures)",
    )
    p.add_argument(
        "--json",
        help="the raw figures (default bench/results/latest.json, or quick.json with --quick)",
    )
    p.add_argument(
        "--profiler",
        choices=["auto", "py-spy", "cprofile", "none"],
        default="auto",
        help="profile one no-op run per backend: py-spy (sampling, if installed; auto "
        "prefers it) or cProfile (always there, but it slows every call)",
    )
    p.add_argument(
        "--soak",
        type=int,
        default=100_000,
        help="jobs for the worker-memory run on each backend, once (0: skip; "
        "--quick skips it unless given)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("WORKHORSE_BENCH_REDIS", DEFAULT_REDIS),
        help="server for the redis runs; each run adds its own ?prefix= "
        "(env WORKHORSE_BENCH_REDIS)",
    )
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("WORKHORSE_BENCH_POSTGRES", DEFAULT_POSTGRES),
        help="server for the postgres runs; each run adds its own ?schema= "
        "(env WORKHORSE_BENCH_POSTGRES)",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.quick and not _given("--repeat", argv):
        args.repeat = 1
    if args.quick and not _given("--soak", argv):
        args.soak = 0
    if args.out is None:
        args.out = "bench/results/quick.md" if args.quick else "docs/benchmarks.md"
    if args.json is None:
        args.json = "bench/results/quick.json" if args.quick else "bench/results/latest.json"
    return args


def _given(option: str, argv: list[str] | None = None) -> bool:
    words = sys.argv[1:] if argv is None else argv
    return any(w == option or w.startswith(option + "=") for w in words)


def choose_backends(requested: str | None, servers: Servers) -> tuple[list[str], dict[str, str]]:
    """The backends to measure, and why the others are left out. A backend asked for by
    name that cannot run is an error, not a silent skip."""
    if requested:
        kinds = [k.strip() for k in requested.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in BACKENDS]
        if unknown:
            raise SystemExit(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
        problems = {k: why for k in kinds if (why := measure.unavailable(k, servers))}
        if problems:
            print(
                "cannot measure: "
                + "; ".join(problems.values())
                + " (start the server, or leave the backend out of --backends)",
                file=sys.stderr,
            )
            raise SystemExit(UNAVAILABLE)
        return kinds, {}
    kinds, skipped = [], {}
    for kind in BACKENDS:
        why = measure.unavailable(kind, servers)
        if why is None:
            kinds.append(kind)
        else:
            skipped[kind] = why
    return kinds, skipped


class Bars:
    """Two rich bars: the whole run, and the measurement in progress."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            refresh_per_second=4,
        )
        self.overall: TaskID = self.progress.add_task("benchmark", total=total)
        self.step: TaskID = self.progress.add_task("", total=1)

    def begin(self, label: str) -> Callable[[int, int], None]:
        self.progress.reset(self.step, description=label, total=1, completed=0)

        def update(done: int, total: int) -> None:
            self.progress.update(self.step, completed=done, total=total)

        return update

    def end(self) -> None:
        self.progress.advance(self.overall)


async def one(
    kind: str, name: str, sizes: Sizes, servers: Servers, progress: Callable[[int, int], None]
) -> dict[str, Any]:
    async with measure.fresh_store(kind, servers) as url:
        job: Awaitable[dict[str, Any]]
        if name == "enqueue_one":
            job = measure.enqueue_one(url, sizes.enqueue_one, progress)
        elif name == "enqueue_concurrent":  # bench.ab only: 100 producers in one process
            job = measure.enqueue_concurrent(url, sizes.enqueue_bulk, progress)
        elif name == "enqueue_bulk":
            job = measure.enqueue_bulk(url, sizes.enqueue_bulk, progress)
        elif name == "noop":
            job = measure.noop_processing(kind, url, sizes.noop, progress)
        elif name == "sleep":
            job = measure.sleep_processing(kind, url, sizes.sleep, progress)
        else:
            job = measure.roundtrip(kind, url, sizes.roundtrip, sizes.warmup, progress)
        return await job


async def run(
    args: argparse.Namespace, kinds: list[str], skipped: dict[str, str], console: Console
) -> dict[str, Any]:
    servers = Servers(redis=args.redis_url, postgres=args.postgres_url)
    profiler = args.profiler
    if profiler == "auto":
        profiler = "none" if args.quick else ("py-spy" if measure.py_spy() else "cprofile")
    elif profiler == "py-spy" and not measure.py_spy():
        raise SystemExit(
            "--profiler py-spy: py-spy is not installed (.venv/bin/pip install "
            "py-spy; it is a tool, not a project dependency)"
        )
    do_profile = profiler != "none"
    soak_n = args.soak
    soaked = list(kinds) if soak_n else []
    total = (
        args.repeat * len(kinds) * len(MEASUREMENTS)
        + (len(kinds) if do_profile else 0)
        + len(soaked)
    )
    raw: dict[str, Any] = {
        "meta": {
            "command": "python -m bench"
            + ("" if len(sys.argv) < 2 else " " + shlex.join(sys.argv[1:])),
            "repeat": args.repeat,
            "quick": args.quick,
            "machine": report.machine_info(),
            "servers": await report.server_versions(
                args.redis_url if "redis" in kinds else None,
                args.postgres_url if "postgres" in kinds else None,
            ),
            "skipped": skipped,
            "profiler": profiler,
            "sizes": {k: measure.sizes_for(k, args.quick).__repr__() for k in kinds},
        },
        "runs": {k: {m: [] for m in MEASUREMENTS} for k in kinds},
        "profiles": {},
        "soak": {},
    }
    bars = Bars(not args.no_progress, total)
    with bars.progress:
        for rep in range(args.repeat):
            for kind in kinds:
                sizes = measure.sizes_for(kind, args.quick)
                for name in MEASUREMENTS:
                    progress = bars.begin(f"{kind} {name} ({rep + 1}/{args.repeat})")
                    load = os.getloadavg()[0]  # others' work on the machine shows here
                    try:
                        figures = await one(kind, name, sizes, servers, progress)
                    except Exception as exc:
                        figures = {"error": f"{type(exc).__name__}: {exc}"}
                        console.print(f"[red]{kind} {name} failed:[/] {figures['error']}")
                    figures["load1_before"] = load
                    raw["runs"][kind][name].append(figures)
                    bars.end()
        for kind in soaked:
            progress = bars.begin(f"{kind} memory over {soak_n:,} jobs")
            try:
                async with measure.fresh_store(kind, servers) as url:
                    raw["soak"][kind] = await measure.soak(kind, url, soak_n, progress)
            except Exception as exc:
                raw["soak"][kind] = {"error": f"{type(exc).__name__}: {exc}"}
                console.print(f"[red]{kind} memory run failed:[/] {exc}")
            bars.end()
        if do_profile:
            with tempfile.TemporaryDirectory(prefix="workhorse-bench-") as tmp:
                for kind in kinds:
                    progress = bars.begin(f"{kind} profile")
                    path = str(Path(tmp) / f"{kind}.profile")
                    n = measure.sizes_for(kind, args.quick).noop
                    if profiler == "py-spy" and kind == "memory":
                        n = max(n, 50_000)  # enough samples at 40,000+ jobs/s
                    try:
                        async with measure.fresh_store(kind, servers) as url:
                            if profiler == "py-spy":
                                fig = await measure.noop_processing(
                                    kind, url, n, progress, spy=path
                                )
                                lines = profile.spy_summary(path, n, fig["worker_cpu_us"])
                            else:
                                await measure.noop_processing(kind, url, n, progress, profile=path)
                                lines = profile.summary(path, n)
                        raw["profiles"][kind] = lines
                    except Exception as exc:
                        console.print(f"[red]{kind} profile failed:[/] {exc}")
                    bars.end()
    return raw


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(stderr=True)
    servers = Servers(redis=args.redis_url, postgres=args.postgres_url)
    kinds, skipped = choose_backends(args.backends, servers)
    for kind, why in skipped.items():
        console.print(f"[yellow]skipping {kind}:[/] {why}")
    if not kinds:
        raise SystemExit("no backend can be measured here")
    raw = asyncio.run(run(args, kinds, skipped, console))
    raw["summary"] = report.summarize(raw)
    out, js = Path(args.out), Path(args.json)
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2) + b"\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(raw, raw["profiles"], report.load_peers()))
    for kind, figures in raw["summary"].items():
        console.print(
            f"[bold]{kind}[/]: "
            + ", ".join(
                f"{key} {report._fmt(figures.get(key))}"
                for key in (
                    "enqueue_one.rate",
                    "enqueue_bulk.rate",
                    "noop.rate",
                    "sleep.rate",
                    "roundtrip.p50_ms",
                    "roundtrip.p99_ms",
                    "noop.worker_cpu_us",
                )
            )
        )
    console.print(f"wrote {out} and {js}")


if __name__ == "__main__":
    main()
