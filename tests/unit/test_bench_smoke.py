"""The benchmark harness must keep working: run it at its smallest size on each backend.

Nothing here is timed; the figures only have to exist and be sane. A backend whose module
or server is missing is skipped, or fails the run under CI=true, as in tests/conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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
