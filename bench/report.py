"""Turn the raw figures into ``docs/benchmarks.md``: machine, versions, the command, one
table per backend with the issues' targets, and the peers' figures from the study."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import ROOT

PEERS_JSON = ROOT / "bench" / "results" / "peers.json"
PEERS_PAGE = "benchmarks-peers.md"


@dataclass(frozen=True, slots=True)
class Target:
    metric: str  # "<measurement>.<figure>"
    op: str  # ">=", "<", "<="
    value: float  # the absolute figure, used when no side-by-side run of the peers exists
    source: str
    times: float | None = None  # else: this many times the best peer's figure, same run

    def bound(self, peer: float | None) -> float:
        return self.value if self.times is None or peer is None else self.times * peer

    def met(self, measured: float, peer: float | None = None) -> bool:
        bound = self.bound(peer)
        if self.op == ">=":
            return measured >= bound
        if self.op == "<":
            return measured < bound
        return measured <= bound

    def text(self, peer: float | None = None) -> str:
        op = {">=": "≥", "<=": "≤", "<": "<"}[self.op]
        if self.times is not None and peer is not None:
            return f"{op} {self.times:g}x the best peer = {_fmt(self.bound(peer))} ({self.source})"
        return f"{op} {_fmt(self.value)} ({self.source})"


TARGETS: dict[str, list[Target]] = {
    "memory": [
        Target("noop.rate", ">=", 20_000, "issue 2"),
        Target("noop.rate", ">=", 50_000, "issue 7"),
    ],
    "sqlite": [
        Target("noop.rate", ">=", 2_000, "issue 2"),
        Target("noop.rate", ">=", 5_000, "issue 7"),
        Target("roundtrip.p50_ms", "<", 2.0, "issue 2"),
    ],
    "redis": [
        Target("noop.rate", ">=", 7_000, "issue 7", times=5.0),
        Target("sleep.rate", ">=", 5_000, "issue 7"),
        Target("enqueue_bulk.rate", ">=", 50_000, "issue 7"),
        Target("roundtrip.p50_ms", "<=", 0.6, "issue 7", times=0.5),
    ],
    "postgres": [
        Target("noop.rate", ">=", 3_000, "issue 7", times=8.0),
        Target("roundtrip.p50_ms", "<=", 3.0, "issue 7"),
    ],
}

# From /work/shared/research/peer-profiles.md (2026-11-23, same kind of machine, medians
# of three runs). Quoted for reference: they were NOT measured by this benchmark run.
PEERS_COLUMNS = (
    "enqueue_one.rate",
    "enqueue_bulk.rate",
    "noop.rate",
    "sleep.rate",
    "roundtrip.p50_ms",
    "roundtrip.p99_ms",
    "noop.worker_cpu_us",
)
PEERS: list[tuple[str, str, tuple[float | None, ...]]] = [
    ("taskiq", "redis", (2_826, None, 1_355, 689, 7.40, 8.59, 668)),
    ("dramatiq", "redis", (4_820, None, 1_270, 1_029, 8.20, 11.00, 805)),
    ("huey", "redis", (7_944, None, 1_265, 825, 1.23, 1.90, 898)),
    ("arq", "redis", (2_257, None, 993, 911, 7.07, 13.30, 974)),
    ("saq", "redis", (2_817, None, 845, 654, 2.12, 3.45, 1_142)),
    ("bullmq (python)", "redis", (587, 584, 604, 529, 9.93, 14.21, 1_622)),
    ("celery (threads)", "redis", (1_089, 920, 393, 349, 2.62, 6.53, 2_310)),
    ("rq (SimpleWorker)", "redis", (2_176, 6_436, 274, 65, 4.43, 6.57, 2_895)),
    ("procrastinate", "postgres", (561, 8_320, 341, 401, 9.69, 17.10, 1_998)),
]
LOWER_IS_BETTER = frozenset(
    {
        "roundtrip.p50_ms",
        "roundtrip.p99_ms",
        "noop.worker_cpu_us",
        "sleep.worker_cpu_us",
        "noop.rss_mb",
    }
)

# (metric, label, unit)
ROWS: list[tuple[str, str, str]] = [
    ("enqueue_one.rate", "enqueue one by one (`await app.enqueue`)", "jobs/s"),
    ("enqueue_one.client_cpu_us", "producer CPU per enqueue, one by one", "µs"),
    ("enqueue_bulk.rate", "enqueue in bulk (`enqueue_many`, 1,000 a call)", "jobs/s"),
    ("enqueue_bulk.client_cpu_us", "producer CPU per enqueue, bulk", "µs"),
    ("noop.rate", "no-op jobs, 1 worker, concurrency 10", "jobs/s"),
    ("noop.worker_cpu_us", "worker CPU per no-op job", "µs"),
    ("noop.rss_mb", "worker RSS after the no-op run", "MiB"),
    ("sleep.rate", "10 ms jobs, 1 worker, concurrency 100 (ideal 10,000)", "jobs/s"),
    ("sleep.steady_rate", "the same, steady: between 10 % and 90 % of the jobs done", "jobs/s"),
    ("sleep.worker_cpu_us", "worker CPU per 10 ms job", "µs"),
    ("roundtrip.p50_ms", "`app.run()` round trip p50", "ms"),
    ("roundtrip.p99_ms", "`app.run()` round trip p99", "ms"),
    ("roundtrip.enqueue_p50_ms", "of which the enqueue (p50 of 100 split calls)", "ms"),
    ("roundtrip.wait_p50_ms", "of which the wait for the result (p50, same calls)", "ms"),
]


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def summarize(raw: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{backend: {"measurement.figure": median}}``."""
    out: dict[str, dict[str, float | None]] = {}
    for kind, measurements in raw["runs"].items():
        figures: dict[str, float | None] = {}
        for name, runs in measurements.items():
            keys = {k for r in runs for k in r if k not in ("n", "error", "load1_before")}
            for key in keys:
                figures[f"{name}.{key}"] = median_of(runs, key)
        out[kind] = figures
    return out


def best_peer(backend: str, metric: str) -> tuple[str, float] | None:
    if metric not in PEERS_COLUMNS:
        return None
    col = PEERS_COLUMNS.index(metric)
    found = [(name, vals[col]) for name, b, vals in PEERS if b == backend and vals[col] is not None]
    if not found:
        return None
    pick: Callable[..., tuple[str, float | None]] = min if metric in LOWER_IS_BETTER else max
    name, value = pick(found, key=lambda item: item[1])
    assert value is not None
    return name, value


def load_peers(path: Path = PEERS_JSON) -> dict[str, Any] | None:
    """The best peer per backend and figure from the last side-by-side run
    (``python -m bench.peers``), with that run's date and commit; None without one."""
    try:
        raw = json.loads(path.read_text())
        machine = raw["meta"]["machine"]
        return {"date": machine["date"], "commit": machine["commit"], "best": raw["ratios"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _same_run_best(
    peers: dict[str, Any] | None, kind: str, metric: str
) -> tuple[str, float] | None:
    row = ((peers or {}).get("best") or {}).get(kind, {}).get(metric)
    if not row or not isinstance(row.get("best"), int | float):
        return None
    return str(row["peer"]), float(row["best"])


# -- the machine and the versions --------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        return out.strip() + (" (src/ has uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": round(_mem_total_gib(), 1),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git_commit(),
        "versions": {
            d: _version(d)
            for d in (
                "workhorse",
                "orjson",
                "pydantic",
                "redis",
                "hiredis",
                "psycopg",
                "psycopg-pool",
            )
        },
    }


async def server_versions(redis_url: str | None, postgres_url: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if redis_url:
        try:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(redis_url.split("?")[0])
            try:
                info = await client.info("server")
                out["redis"] = str(info.get("redis_version"))
            finally:
                await client.aclose()
        except Exception as exc:
            out["redis"] = f"unknown ({type(exc).__name__})"
    if postgres_url:
        try:
            import psycopg

            conn = await psycopg.AsyncConnection.connect(postgres_url.split("?")[0])
            try:
                cur = await conn.execute("SHOW server_version")
                row = await cur.fetchone()
                out["postgres"] = str(row[0]) if row else "unknown"
            finally:
                await conn.close()
        except Exception as exc:
            out["postgres"] = f"unknown ({type(exc).__name__})"
    return out


# -- markdown ----------------------------------------------------------------------------
def backend_table(
    kind: str,
    figures: dict[str, float | None],
    repeats: int,
    peers: dict[str, Any] | None = None,
) -> list[str]:
    """One backend's figures against the targets. With a side-by-side run of the peers
    (``peers``, from bench/results/peers.json) the best-peer column and the targets set
    as multiples of the best peer use its figures; else the study's."""
    targets = TARGETS.get(kind, [])
    same_run = bool(((peers or {}).get("best") or {}).get(kind))
    peered = same_run or any(b == kind for _, b, _ in PEERS)
    head = "| measurement | workhorse (median) | target | status |"
    sep = "| --- | --: | --- | --- |"
    if same_run:
        assert peers is not None
        head += f" best peer, side-by-side run of {peers['date']} | workhorse against it |"
        sep += " --- | --: |"
    elif peered:
        head += " best peer in the study (not this run) | workhorse against it |"
        sep += " --- | --: |"
    lines = [head, sep]
    for metric, label, unit in ROWS:
        value = figures.get(metric)
        peer = _same_run_best(peers, kind, metric) if same_run else best_peer(kind, metric)
        pv = peer[1] if same_run and peer is not None else None
        mine = [t for t in targets if t.metric == metric]
        target = "; ".join(t.text(pv) for t in mine) or ""
        if value is None:
            status = "not measured" if mine else ""
        else:
            status = "; ".join("**met**" if t.met(value, pv) else "**not met**" for t in mine)
        row = f"| {label} | {_fmt(value)} {unit} | {target} | {status} |"
        if peered:
            if peer is None:
                row += " — | — |"
            else:
                name, best = peer
                row += f" {_fmt(best)} {unit} ({name}) | {_ratio(metric, value, best)} |"
        lines.append(row)
    return lines


def _ratio(metric: str, mine: float | None, peer: float) -> str:
    if not mine:
        return "—"
    if metric not in LOWER_IS_BETTER:
        return f"{mine / peer:.1f}x the peer's rate"
    if mine <= peer:
        return f"{peer / mine:.1f}x lower"
    return f"{mine / peer:.1f}x higher (worse)"


def peers_table() -> list[str]:
    lines = [
        "| library | backend | enqueue 1-by-1 /s | bulk /s | no-op /s | 10 ms sleep /s "
        "| round trip p50 / p99 ms | worker CPU µs/job |",
        "| --- | --- | --: | --: | --: | --: | --: | --: |",
    ]
    for name, backend, v in PEERS:
        lines.append(
            f"| {name} | {backend} | {_fmt(v[0])} | {_fmt(v[1])} | {_fmt(v[2])} | "
            f"{_fmt(v[3])} | {_fmt(v[4])} / {_fmt(v[5])} | {_fmt(v[6])} |"
        )
    return lines


def _soak_section(soak: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "## Worker memory over many jobs",
        "",
        "One run per backend (not repeated): no-op jobs through one worker, its RSS "
        "noted every tenth of the run. Issue 7 asks for worker memory to stay flat. "
        + (
            "The memory store lives in the worker's process: every job is enqueued there "
            "before the first mark, and finished ones stay until retention (run every "
            "`keep_completed` finishes, 10,000 by default) removes them."
            if "memory" in soak
            else "(This run measured the durable backends only.)"
        ),
        "",
        "| backend | jobs | RSS after the first tenth | RSS at the last job | growth | "
        "per 10,000 jobs | RSS at each tenth (MiB) |",
        "| --- | --: | --: | --: | --: | --: | --- |",
    ]
    for kind, fig in soak.items():
        if fig.get("error"):
            lines.append(f"| {kind} | failed: {fig['error'].splitlines()[0]} | | | | | |")
            continue
        trace = ", ".join(f"{mb:.1f}" for _, mb in fig.get("rss_trace", []))
        per = fig["rss_growth_mb"] / max(1, fig["n"] - fig["n"] // 10) * 10_000
        lines.append(
            f"| {kind} | {fig['n']:,} | {fig['rss_first_tenth_mb']:.1f} MiB | "
            f"{fig['rss_end_mb']:.1f} MiB | {fig['rss_growth_mb']:+.1f} MiB | "
            f"{per:+.2f} MiB | {trace} |"
        )
    lines.append("")
    return lines


def _profile_intro(profiler: str) -> list[str]:
    if profiler == "py-spy":
        return [
            "## Where the worker's time goes (py-spy, no-op run)",
            "",
            "One more no-op run per backend, its worker process sampled by py-spy "
            "(`--nonblocking`, so the worker runs at nearly full speed; all threads). "
            "Each sample's innermost Python frame gets the time; shares are turned into "
            "µs per job with the CPU time that run measured. Native code shows under the "
            "Python function that called it, and single functions below about 1 µs are "
            "within sampling noise.",
            "",
        ]
    return [
        "## Where the worker's time goes (cProfile, no-op run)",
        "",
        "One more no-op run per backend under cProfile, which adds its own cost to every "
        "Python call and sees only the event loop's thread: read the shares and the order, "
        "not the absolute figures. `own` is time inside the function itself, `total` "
        "includes what it calls; both in µs per job. Install py-spy in .venv for a "
        "sampling profile instead.",
        "",
    ]


def _peers_link(peers: dict[str, Any] | None) -> list[str]:
    """The section that points to the side-by-side page (kept on every rewrite)."""
    when = (
        f"last run {peers['date']} at commit {peers['commit']}; its best peer per backend "
        "is the comparison column below"
        if peers
        else "not run on this machine yet; the comparison column below quotes the study"
    )
    return [
        "## Side by side with the peers",
        "",
        "arq, SAQ, RQ, Dramatiq, Celery, Huey, taskiq and Procrastinate measured in one "
        f"run with workhorse, with ratios, charts and scale-out: [{PEERS_PAGE}]"
        f"({PEERS_PAGE}) (`python -m bench.peers`; {when}). The peer figures quoted at "
        "the end of this page are from an earlier study. Where the time per job goes, "
        "and why a target is missed: [profiles.md](profiles.md).",
        "",
    ]


def render(
    raw: dict[str, Any], profiles: dict[str, list[str]], peers: dict[str, Any] | None = None
) -> str:
    meta = raw["meta"]
    m = meta["machine"]
    figures = summarize(raw)
    repeats = meta["repeat"]
    v = m["versions"]
    out = [
        "# Benchmarks",
        "",
        "Written by `bench/` (`make bench`); the raw figures of the same run are in "
        "`bench/results/latest.json`. Every figure is the median of "
        f"{repeats} run{'s' if repeats != 1 else ''}. These are measurements, not tests: "
        "nothing in the test suite is timed.",
        "",
        *_peers_link(peers),
        "## This run",
        "",
        f"- date: {m['date']}",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, "
        f"{m['platform']}; other work may have shared the machine while it ran",
        f"- Python {m['python']}; workhorse {v['workhorse']} at commit {m['commit']}; "
        f"orjson {v['orjson']}, pydantic {v['pydantic']}, redis-py {v['redis']} "
        f"(hiredis {v['hiredis']}), psycopg {v['psycopg']} (pool {v['psycopg-pool']})",
    ]
    servers = meta.get("servers", {})
    if servers:
        out.append(
            "- servers on loopback: "
            + ", ".join(f"{k} {val}" for k, val in sorted(servers.items()))
        )
    loads = [
        r["load1_before"]
        for runs in raw["runs"].values()
        for rs in runs.values()
        for r in rs
        if isinstance(r.get("load1_before"), int | float)
    ]
    if loads:
        out.append(
            f"- 1-minute load average before each measurement: {min(loads):.2f} to "
            f"{max(loads):.2f} (on {m['nproc']} CPUs; above about 1, other work "
            "competed with the benchmark)"
        )
    out += [
        f"- command: `{meta['command']}`",
        "",
        "## Method",
        "",
        "- One worker process runs one asyncio worker on the `default` queue with the "
        "library's default settings: concurrency 10 for no-op jobs, 100 for jobs that "
        "sleep 10 ms.",
        "- Processing: the jobs are enqueued first (not timed); the time runs from the "
        "worker's start until it has finished them all, and the store must then count "
        "every one as completed. Worker CPU is `time.process_time()` of the worker process "
        "over that span (all its threads); RSS is the worker's resident memory just after.",
        "- Durable backends (sqlite, redis, postgres) run the worker in its own process "
        "(`bench/child.py`) and the producer in the benchmark's process, as deployed. "
        "The memory store lives in one process, so its worker child enqueues first, and "
        "its round trip runs the worker in the producer's process.",
        "- Enqueue: `await app.enqueue(task)` in a loop, and `app.enqueue_many` in batches "
        "of 1,000; producer CPU is the benchmark process's CPU over the loop.",
        "- Round trip: `await app.run(task, timeout=30)` 500 times in sequence against a "
        "running worker (after a warm-up), p50 and p99 of the wall time of each call.",
        "- Every measurement gets a fresh store (a new SQLite file, a new Redis key prefix, "
        "a new PostgreSQL schema), dropped afterwards.",
        "",
    ]
    skipped = meta.get("skipped", {})
    if skipped:
        out += ["Not measured in this run:", ""]
        out += [f"- {kind}: {why}" for kind, why in skipped.items()]
        out.append("")
    for kind in raw["runs"]:
        out += [f"## {kind}", ""]
        out += backend_table(kind, figures.get(kind, {}), repeats, peers)
        errors = [
            f"{name}: {r['error']}"
            for name, runs in raw["runs"][kind].items()
            for r in runs
            if r.get("error")
        ]
        if errors:
            out += ["", "Failures in this run:", ""]
            out += [f"- {e.splitlines()[0]}" for e in dict.fromkeys(errors)]
        out.append("")
    soak = raw.get("soak") or {}
    if soak:
        out += _soak_section(soak)
    if profiles:
        out += _profile_intro(meta.get("profiler", "cprofile"))
        for kind, lines in profiles.items():
            out += [f"### {kind}", "", *lines, ""]
    out += [
        "## Reference: the peers (from the study, not measured by this run)",
        "",
        "Quoted from `../shared/research/peer-profiles.md`: ten Python job systems on the "
        "same kind of machine (2 cores, Python 3.11, Redis 7.0 without persistence, "
        "PostgreSQL 15 with durable commits), one worker process each, no-op jobs at "
        "concurrency 10 and 10 ms jobs at concurrency 100, medians of three runs, "
        'measured on 2026-11-23. The "best peer" columns above compare with these '
        "figures only when no side-by-side run (`python -m bench.peers`) exists.",
        "",
        *peers_table(),
        "",
        "Store limits on that machine: redis-benchmark about 22,000 ops/s with one client "
        "and 600,000 pipelined; PostgreSQL about 2,800 single-row durable commits/s and "
        "45,000 rows/s in one batch.",
        "",
    ]
    return "\n".join(out) + "\n"
