"""The benchmark harness must keep working: run it at its smallest size on each backend.

Nothing here is timed; the figures only have to exist and be sane. A backend whose module
or server is missing is skipped, or fails the run under CI=true, as in tests/conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# bench/ is a package at the repository's root, not installed: import it from there.
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS = os.environ.get("WORKHORSE_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get("WORKHORSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
UNAVAILABLE = 3  # bench's exit status when a backend's module or server is missing
CHOSEN = os.environ.get("WORKHORSE_TEST_BACKENDS", "memory,sqlite,redis,postgres").split(",")
MEASUREMENTS = {"enqueue_one", "enqueue_bulk", "noop", "sleep", "roundtrip"}


@pytest.mark.parametrize(
    "kind", [k for k in ("memory", "sqlite", "redis", "postgres") if k in CHOSEN]
)
def test_bench_quick_writes_figures_and_report(kind: str, tmp_path: Path) -> None:
    out, raw = tmp_path / "benchmarks.md", tmp_path / "latest.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--backends",
            kind,
            "--no-progress",
            "--redis-url",
            REDIS,
            "--postgres-url",
            POSTGRES,
            "--out",
            str(out),
            "--json",
            str(raw),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    if proc.returncode == UNAVAILABLE:
        if IN_CI:
            pytest.fail(f"{proc.stderr.strip()} (CI=true: a missing backend fails the run)")
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr

    runs = json.loads(raw.read_text())["runs"][kind]
    assert set(runs) == MEASUREMENTS
    for name, results in runs.items():
        assert len(results) == 1
        assert "error" not in results[0], f"{name}: {results[0].get('error')}"
    for name in ("enqueue_one", "enqueue_bulk", "noop", "sleep"):
        assert runs[name][0]["rate"] > 0
    assert runs["noop"][0]["worker_cpu_us"] > 0
    assert runs["noop"][0]["rss_mb"] > 0
    trip = runs["roundtrip"][0]
    assert 0 < trip["p50_ms"] <= trip["p99_ms"]
    assert trip["enqueue_p50_ms"] > 0
    assert trip["wait_p50_ms"] > 0

    report = out.read_text()
    assert f"## {kind}" in report
    assert "no-op jobs, 1 worker, concurrency 10" in report
    assert f"python -m bench --quick --backends {kind}" in report
    assert "Failures in this run" not in report


def test_bench_refuses_an_unknown_backend() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--backends", "mongo", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "unknown backend(s) ['mongo']" in proc.stderr


def _raw(noop_rate: float) -> dict[str, Any]:
    run = {"rate": noop_rate, "worker_cpu_us": 30.0, "rss_mb": 40.0}
    return {
        "meta": {
            "command": "python -m bench",
            "repeat": 1,
            "machine": report.machine_info(),
            "servers": {},
        },
        "runs": {"redis": {"noop": [run]}},
    }


def test_report_keeps_the_peers_link_and_compares_with_the_side_by_side_run(
    tmp_path: Path,
) -> None:
    peers_json = tmp_path / "peers.json"
    peers_json.write_text(
        json.dumps(
            {
                "meta": {"machine": {"date": "2026-11-24 07:29 UTC", "commit": "abc1234"}},
                "ratios": {
                    "redis": {
                        "noop.rate": {"workhorse": 1.0, "peer": "huey", "best": 3000.0},
                        "noop.rss_mb": {"workhorse": 1.0, "peer": "arq", "best": 30.0},
                    }
                },
            }
        )
    )
    peers = report.load_peers(peers_json)
    assert peers is not None
    # 5x the same run's best peer (huey, 3,000/s) is the target, not the study's 7,000.
    text = report.render(_raw(16_000.0), {}, peers)
    assert "[benchmarks-peers.md](benchmarks-peers.md)" in text
    assert "best peer, side-by-side run of 2026-11-24 07:29 UTC" in text
    noop = next(line for line in text.splitlines() if line.startswith("| no-op jobs"))
    assert "≥ 5x the best peer = 15,000 (issue 7) | **met**" in noop
    assert "3,000 jobs/s (huey) | 5.3x the peer's rate" in noop
    rss = next(line for line in text.splitlines() if line.startswith("| worker RSS"))
    assert "(arq) | 1.3x higher (worse)" in rss
    slower = report.render(_raw(14_000.0), {}, peers)
    assert "= 15,000 (issue 7) | **not met**" in slower


def test_report_without_a_side_by_side_run_quotes_the_study(tmp_path: Path) -> None:
    assert report.load_peers(tmp_path / "missing.json") is None
    text = report.render(_raw(8_000.0), {}, None)
    assert "[benchmarks-peers.md](benchmarks-peers.md)" in text
    assert "not run on this machine yet" in text
    noop = next(line for line in text.splitlines() if line.startswith("| no-op jobs"))
    assert "≥ 7,000 (issue 7) | **met**" in noop
    assert "best peer in the study (not this run)" in text


def test_ab_calls_a_figure_behind_only_when_every_round_is_worse() -> None:
    from bench.ab import paired, verdict

    base = [{"rate": 100.0}, {"rate": 120.0}, {"rate": 90.0}]
    slower = [{"rate": 95.0}, {"rate": 110.0}, {"rate": 85.0}]
    assert paired(base, slower, "rate") == [0.95, 110.0 / 120.0, 85.0 / 90.0]
    assert verdict(paired(base, slower, "rate"), higher_is_better=True) == "**behind**"
    # The same rates read as CPU per job (lower is better) are all ahead.
    assert verdict(paired(base, slower, "rate"), higher_is_better=False) == "ahead"
    # One round where the new tree was as good: the machine's noise, not a verdict.
    mixed = [{"rate": 95.0}, {"rate": 125.0}, {"rate": 85.0}]
    assert verdict(paired(base, mixed, "rate"), higher_is_better=True) == "within spread"
    assert verdict(paired(base[:1], slower[:1], "rate"), higher_is_better=True) == "-"
    # A round that failed on one side is left out, not counted as zero.
    assert paired(base, [{"error": "x"}, *slower[1:]], "rate") == [110.0 / 120.0, 85.0 / 90.0]


def test_rss_reports_every_phase_of_a_worker(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rss", "--backend", "sqlite", "--n", "50", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = dict(line.strip("| ").split(" | ") for line in proc.stdout.splitlines()[2:8] if line)
    phases = {name: float(value) for name, value in rows.items()}
    assert list(phases) == ["harness", "import", "loop", "open", "worker", "run"]
    assert 0 < phases["harness"] < phases["import"] <= phases["run"]
    assert "| [heap] |" in proc.stdout
