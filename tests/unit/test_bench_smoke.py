"""The benchmark harness must keep working: run it at its smallest size on memory.

Nothing here is timed; the figures only have to exist and be sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_on_memory_writes_figures_and_report(tmp_path: Path) -> None:
    out, raw = tmp_path / "benchmarks.md", tmp_path / "latest.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--backends",
            "memory",
            "--no-progress",
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
    assert proc.returncode == 0, proc.stderr

    figures = json.loads(raw.read_text())
    runs = figures["runs"]["memory"]
    assert set(runs) == {"enqueue_one", "enqueue_bulk", "noop", "sleep", "roundtrip"}
    for name, results in runs.items():
        assert len(results) == 1
        assert "error" not in results[0], f"{name}: {results[0].get('error')}"
    for name in ("enqueue_one", "enqueue_bulk", "noop", "sleep"):
        assert runs[name][0]["rate"] > 0
    assert runs["noop"][0]["worker_cpu_us"] > 0
    assert 0 < runs["roundtrip"][0]["p50_ms"] <= runs["roundtrip"][0]["p99_ms"]

    report = out.read_text()
    assert "## memory" in report
    assert "no-op jobs, 1 worker, concurrency 10" in report
    assert "python -m bench --quick --backends memory" in report


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
