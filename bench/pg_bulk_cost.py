"""``python -m bench.pg_bulk_cost``: what a PostgreSQL bulk job costs the server.

python -m bench.pg_bulk_cost --url postgresql://postgres@127.0.0.1:5499/test --base main

``enqueue_many`` of 1,000 jobs at a time (bench.measure's bulk shape) on a fresh schema,
each side in its own interpreter (the base exported with ``git archive``), alternated.
Per job: the server processes' CPU (every child of the postmaster, from /proc: so the
server must be local and should be private, nothing else running on it), the WAL bytes
(``pg_current_wal_lsn``), the statements' execution time (``pg_stat_statements``, when
the database has it), the producer's CPU, and the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench.ab import export
from bench.measure import BULK_BATCH, DEFAULT_POSTGRES, ROOT
from bench.tasks import NOOP, make_app

_JOBS = 20_000


def _server_cpu(postmaster: int) -> float:
    """Seconds on CPU of the postmaster's children (/proc/PID/schedstat: nanoseconds)."""
    total = 0
    for pid in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except OSError:
            continue  # a backend that just exited
    return total / 1e9


def _scalar(url: str, query: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
        return None if row is None else row[0]


def _statements_ms(url: str) -> float | None:
    """Execution time of every statement since the last reset (None without the view)."""
    try:
        return float(
            _scalar(url, "SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements")
        )
    except psycopg.Error:
        return None


def _postmaster(url: str) -> int:
    """The server's postmaster: the parent of this connection's backend."""
    backend = int(_scalar(url, "SELECT pg_backend_pid()"))
    return int(Path(f"/proc/{backend}/stat").read_text().rpartition(")")[2].split()[1])


def _start(url: str) -> tuple[int, str]:
    """The postmaster and the WAL's position; the statements' figures reset."""
    with psycopg.connect(url, autocommit=True) as conn, contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_stat_statements_reset()")
    return _postmaster(url), str(_scalar(url, "SELECT pg_current_wal_lsn()"))


async def _bulk(url: str, n: int) -> dict[str, float]:
    schema = "whbulk" + os.urandom(4).hex()
    async with make_app(f"{url}?schema={schema}") as app:
        task = app.get_task(NOOP)
        await app.enqueue(task)  # the schema and the pool, outside the figures
        postmaster, lsn0 = _start(url)
        s0, cpu0, t0 = _server_cpu(postmaster), time.process_time(), time.perf_counter()
        for start in range(0, n, BULK_BATCH):
            await app.enqueue_many(task, [None] * min(BULK_BATCH, n - start))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server = _server_cpu(postmaster) - s0
        wal = _scalar(url, f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}')")
        statements = _statements_ms(url)
        backend = app.backend
    await backend.drop()  # type: ignore[attr-defined]
    figures = {
        "rate": n / elapsed,
        "client_cpu_us": cpu / n * 1e6,
        "server_cpu_us": server / n * 1e6,
        "wal_bytes": float(wal) / n,
    }
    if statements is not None:
        figures["statements_us"] = statements / n * 1e3
    return figures


def _side(tree: Path, url: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tree / "src"), str(tree)))}
    args = [sys.executable, "-m", "bench.pg_bulk_cost", "--one", url]
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, timeout=900)
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-800:]}
    figures: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pg_bulk_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", default=DEFAULT_POSTGRES, help="a local server, private if you can")
    p.add_argument("--base", help="a commit to compare with, alternated with this tree")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        figures = asyncio.run(_bulk(args.one, _JOBS))
        sys.stdout.write(orjson.dumps(figures).decode() + "\n")
        return
    with tempfile.TemporaryDirectory(prefix="workhorse-pgbulk-") as tmp:
        sides = {"new": ROOT}
        if args.base:
            sides = {"base": export(args.base, Path(tmp)), "new": ROOT}
        results: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in range(args.rounds):
            for side in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                fig = _side(sides[side], args.url)
                results[side].append(fig)
                shown = {k: round(v, 2) for k, v in fig.items() if isinstance(v, float)}
                print(f"round {r + 1} {side}: {fig.get('error') or shown}", file=sys.stderr,
                      flush=True)  # fmt: skip
    print(f"\nbulk enqueue per job, medians (min-max) of {args.rounds} round(s)\n")
    print("| figure | " + " | ".join(sides) + " |")
    print("| --- |" + " --: |" * len(sides))
    keys = sorted({k for runs in results.values() for f in runs for k in f if k != "error"})
    for key in keys:
        cells = []
        for side in sides:
            got = [f[key] for f in results[side] if key in f]
            cells.append(
                f"{statistics.median(got):,.2f} ({min(got):,.2f}-{max(got):,.2f})" if got else "-"
            )
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
