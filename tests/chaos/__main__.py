"""``python -m tests.chaos --duration 120 --seed 1 --backend all --scenario all``

Runs the long versions of the chaos scenarios and prints one line of figures per run, then
a Markdown table for docs/reliability.md. Exits 1 if any run broke a guarantee."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from tests.chaos.harness import BACKENDS, Report
from tests.chaos.scenarios import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--backend", action="append", choices=[*BACKENDS, "all"], help="repeatable; all"
    )
    parser.add_argument(
        "--scenario", action="append", choices=[*SCENARIOS, "all"], help="repeatable; all"
    )
    parser.add_argument("--rounds", type=int, default=100, help="race: least rounds")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="kill, kill_defaults, soak: jobs enqueued per second",
    )
    parser.add_argument(
        "--resume-limit",
        type=float,
        default=45.0,
        help="outage: seconds a worker may take to claim again after a heal (Redis gives "
        "up a call on a half-open connection after 30 s)",
    )
    parser.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep the work dir (ledger.db, worker logs) of a run that failed",
    )
    args = parser.parse_args(argv)
    backends = _pick(args.backend, BACKENDS)
    scenarios = _pick(args.scenario, tuple(SCENARIOS))
    logging.basicConfig(level=logging.WARNING)
    command = "python -m tests.chaos " + shlex.join(sys.argv[1:] if argv is None else argv)
    reports: list[Report] = []
    for scenario in scenarios:
        for backend in backends:
            tmp = tempfile.mkdtemp(prefix=f"wh-chaos-{scenario}-{backend}-")
            options = {"duration": args.duration, "seed": args.seed}
            if scenario == "race":
                options["rounds"] = args.rounds
            if scenario == "outage":
                options["resume_limit"] = args.resume_limit
            if scenario in ("kill", "kill_defaults", "soak") and args.rate is not None:
                options["rate"] = args.rate
            try:
                report: Report = asyncio.run(SCENARIOS[scenario](backend, Path(tmp), **options))
            except Exception as exc:
                report = Report(scenario, backend, args.seed, args.duration)
                report.failures.append(f"{type(exc).__name__}: {exc}")
            print(report.line(), flush=True)
            if report.failures and args.keep_failed:
                print(f"  kept its ledger and worker logs in {tmp}", flush=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            reports.append(report)
    print(f"\n`{command}`\n")
    print("| scenario | backend | figures | result |\n| --- | --- | --- | --- |")
    for r in reports:
        figs = ", ".join(f"{k} {_fmt(v)}" for k, v in r.figures.items())
        print(f"| {r.scenario} | {r.backend} | {figs} | {'FAIL' if r.failures else 'pass'} |")
    return 1 if any(r.failures for r in reports) else 0


def _pick(given: list[str] | None, every: tuple[str, ...]) -> tuple[str, ...]:
    if not given or "all" in given:
        return every
    return tuple(given)


def _fmt(v: object) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
