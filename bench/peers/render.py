"""The side-by-side page (docs/benchmarks-peers.md) from ``bench/results/peers.json``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.report import _fmt

# (metric, column header, unit)
METRICS: list[tuple[str, str, str]] = [
    ("enqueue_one.rate", "enqueue 1-by-1 /s", "jobs/s"),
    ("enqueue_bulk.rate", "bulk /s", "jobs/s"),
    ("noop.rate", "no-op /s (c=10)", "jobs/s"),
    ("noop.worker_cpu_us", "worker CPU µs/job", "µs"),
    ("noop.rss_mb", "worker RSS MiB", "MiB"),
    ("sleep.rate", "10 ms sleep /s (c=100)", "jobs/s"),
    ("roundtrip.p50_ms", "round trip p50 ms", "ms"),
    ("roundtrip.p99_ms", "round trip p99 ms", "ms"),
]
METRIC_KEYS: dict[str, tuple[str, ...]] = {}
for _metric, _, _ in METRICS:
    _name, _key = _metric.split(".")
    METRIC_KEYS[_name] = (*METRIC_KEYS.get(_name, ()), _key)
LABELS = {
    "enqueue_one.rate": "enqueue one by one",
    "enqueue_bulk.rate": "enqueue in bulk",
    "noop.rate": "no-op jobs, 1 worker, concurrency 10",
    "noop.worker_cpu_us": "worker CPU per no-op job",
    "noop.rss_mb": "worker RSS after the no-op run",
    "sleep.rate": "10 ms jobs, 1 worker, concurrency 100",
    "roundtrip.p50_ms": "run-and-await round trip p50",
    "roundtrip.p99_ms": "run-and-await round trip p99",
}
_NOTE_OF = {m: m.split(".")[0] for m, _, _ in METRICS}


def _cell(summary: dict[str, Any], metric: str) -> str:
    value = summary["figures"].get(metric)
    if value is not None:
        return _fmt(value)
    note = summary["notes"].get(_NOTE_OF[metric], "")
    return "n/a" if note.startswith("n/a") else ("failed" if note else "—")


def _factor(row: dict[str, Any], metric: str) -> str:
    factor = row.get("factor")  # > 1: workhorse is better by that much
    if factor is None:
        return "—"
    if metric.endswith(("_ms", "_us", "_mb")):
        return f"**{factor:.1f}x** lower" if factor >= 1 else f"{1 / factor:.1f}x higher (worse)"
    return f"**{factor:.1f}x** the rate" if factor >= 1 else f"{factor:.2f}x the rate (slower)"


def render(raw: dict[str, Any], charts: list[str], out: Path) -> str:
    meta, summary = raw["meta"], raw["summary"]
    m = meta["machine"]
    lines = [
        "# Benchmarks: workhorse side by side with the peers",
        "",
        "Written by `python -m bench.peers`; raw figures in `bench/results/peers.json`. "
        "workhorse and every peer were measured in the same run, on the same servers, "
        "one after the other, so each ratio compares figures taken minutes apart. "
        "Measurements, not tests: nothing in the test suite is timed.",
        "",
        "## This run",
        "",
        f"- date: {m['date']}; the whole run took {meta['minutes']:.0f} min",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, {m['platform']}; "
        "Redis and PostgreSQL on loopback on the same machine; other work may have shared it",
        f"- Python {m['python']}; workhorse at commit {m['commit']}",
        "- peers: "
        + "; ".join(
            f"{info['version']}" for info in meta["peers"].values() if not info.get("error")
        )
        + " (pinned in `bench/peers/requirements*.txt`, installed into `.venv-peers`)",
        f"- every figure is the median of {meta['repeat']} repetition(s)"
        + (f" ({meta['repeat_note']})" if meta.get("repeat_note") else ""),
        f"- command: `{meta['command']}`",
        "",
    ]
    if meta["failed"]:
        lines += ["### Not measured", ""]
        lines += [f"- {who}: {why.splitlines()[0]}" for who, why in meta["failed"].items()]
        lines.append("")
    lines += _tables(summary)
    lines += _ratio_tables(raw["ratios"])
    lines += _charts(charts, out)
    lines += _scaleout(raw.get("scaleout") or {})
    lines += _notes(summary)
    lines += _method(meta)
    return "\n".join(lines) + "\n"


def _tables(summary: dict[str, Any]) -> list[str]:
    lines = ["## Side by side (medians)", ""]
    for backend in ("redis", "postgres"):
        entries = [e for e in summary if e.endswith(f"/{backend}")]
        if not entries:
            continue
        lines += [
            f"### {backend}",
            "",
            "| library | " + " | ".join(head for _, head, _ in METRICS) + " |",
            "| --- | " + " | ".join("--:" for _ in METRICS) + " |",
        ]
        for entry in entries:
            name = entry.split("/")[0]
            name = f"**{name}**" if name == "workhorse" else name
            lines.append(
                f"| {name} | " + " | ".join(_cell(summary[entry], m) for m, _, _ in METRICS) + " |"
            )
        lines.append("")
    lines += [
        "n/a: the library has no such operation (see the notes below); failed: every "
        "repetition failed (the reason is in the notes and in `peers.json`).",
        "",
    ]
    return lines


def _ratio_tables(ratios: dict[str, Any]) -> list[str]:
    lines = ["## workhorse against the best peer, same run", ""]
    for kind, rows in ratios.items():
        lines += [
            f"### {kind}",
            "",
            "| measurement | workhorse | best peer | workhorse against it |",
            "| --- | --: | --: | --- |",
        ]
        for metric, row in rows.items():
            unit = next(u for m, _, u in METRICS if m == metric)
            lines.append(
                f"| {LABELS[metric]} | {_fmt(row['workhorse'])} {unit} | "
                f"{_fmt(row['best'])} {unit} ({row['peer']}) | {_factor(row, metric)} |"
            )
        lines.append("")
    return lines


def _charts(charts: list[str], out: Path) -> list[str]:
    if not charts:
        return []
    lines = ["## Charts", ""]
    for path in charts:
        rel = os.path.relpath(path, out.parent)
        lines += [f"![{Path(path).stem}]({rel})", ""]
    return lines


def _scaleout(scale: dict[str, Any]) -> list[str]:
    if not scale:
        return []
    counts = sorted({int(c) for per in scale.values() for c in per})
    lines = [
        "## Scale-out: workhorse with 1, 2 and 4 worker processes",
        "",
        "No-op jobs enqueued first, then N worker processes (concurrency 10 each) started "
        "together; jobs/s from the start signal to the last finish in any worker. This "
        "machine has 2 cores shared by the workers, the store's server and the harness, so "
        "more processes than cores cannot add much here: the method is what matters, and "
        "on a machine with cores to spare the same command shows the growth.",
        "",
        "| backend | jobs | "
        + " | ".join(f"{c} worker{'s' if c > 1 else ''}" for c in counts)
        + " | 4 against 1 |",
        "| --- | --: | " + " | ".join("--:" for _ in counts) + " | --: |",
    ]
    for kind, per in scale.items():
        rates = [per.get(str(c), {}).get("rate") for c in counts]
        first, last = rates[0], rates[-1]
        grow = f"{last / first:.2f}x" if first and last else "—"
        n = next(iter(per.values()))["n"]
        lines.append(
            f"| {kind} | {n:,} | "
            + " | ".join(f"{_fmt(r)} /s" if r else "failed" for r in rates)
            + f" | {grow} |"
        )
    lines.append("")
    return lines


def _notes(summary: dict[str, Any]) -> list[str]:
    noted = [(e, s["notes"]) for e, s in summary.items() if s["notes"]]
    if not noted:
        return []
    lines = ["## Notes on missing figures", ""]
    for entry, notes in noted:
        for name, why in notes.items():
            lines.append(f"- {entry}, {name}: {why}")
    lines.append("")
    return lines


def _method(meta: dict[str, Any]) -> list[str]:
    lines = [
        "## Method",
        "",
        "- workhorse: the measurements of `python -m bench` (`bench.__main__.one`), called "
        "from this run, with that benchmark's sizes: "
        + "; ".join(f"{k}: {v}" for k, v in meta["workhorse_sizes"].items())
        + ". Its processing rate is timed from the worker's start to the last finish.",
        "- peers: each library's own worker in its own process (`bench/peers/child.py`), "
        "jobs enqueued beforehand; the rate is timed from the first job's finish to the "
        "last one's, so the peers' start-up is left out (a small advantage to them). Worker "
        "CPU is that process's CPU time over the same span; RSS is read at the last job.",
        "- enqueue one by one: the library's ordinary call in a loop, after one untimed "
        "call that connects; bulk: the library's own bulk call, 1,000 jobs a call (n/a "
        "where there is none).",
        "- round trip: 500 sequential enqueue-and-await-the-result calls against a worker "
        "at concurrency 10 (after a warm-up); libraries whose wait polls were given a 1 ms "
        "interval, their best case.",
        "- stores: each peer on its own Redis database number (1-7, flushed before and "
        "after each measurement; db 0 is left to the tests) or its own PostgreSQL "
        "database (created per measurement, ANALYZEd after the jobs are enqueued, dropped "
        "afterwards). Every child process is bounded in time and killed if it overruns.",
        "- peer sizes (jobs): " + "; ".join(f"{p}: {s}" for p, s in meta["sizes"].items()),
        "",
        "Each peer's settings (from its documentation's advice for throughput):",
        "",
    ]
    for peer, info in meta["peers"].items():
        if not info.get("error"):
            lines.append(f"- {peer}: {info['settings']}")
    lines.append("")
    return lines
