"""``python -m bench.scale``: do the hot calls cost the same with a million jobs stored?

python -m bench.scale                                  # sqlite, redis, postgres; 1,000,000
python -m bench.scale --rows 200000 --backends postgres

Per backend, on a store of its own (an SQLite file in a temporary folder, a private
``redis-server`` without persistence, a PostgreSQL schema): the same calls are timed on
the empty store, then again after ``--rows`` queued jobs were added (``enqueue`` in
batches of 1,000), and again once those were claimed and finished (1,000 a step):
one enqueue, claim 10 + finish 10, ``get_job``, the newest 50 jobs, ``counts()``. Also
the store's size per queued job (Redis ``used_memory``; the SQLite file with its WAL;
PostgreSQL's jobs and events tables with their indexes) for a payload of ``{"n": <i>}``.
Writes docs/benchmarks-scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.measure import DEFAULT_POSTGRES
from workhorse import Workhorse
from workhorse.job import NewJob, Outcome, new_job_id

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-scale.md"
QUEUE = "default"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _store(kind: str) -> Iterator[tuple[str, Callable[[], int]]]:
    """The store's URL and a function giving its size in bytes."""
    tmp = Path(tempfile.mkdtemp(prefix="workhorse-scale-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        if kind == "sqlite":
            path = tmp / "scale.db"

            def sqlite_size() -> int:
                return sum(p.stat().st_size for p in tmp.glob("scale.db*"))

            yield f"sqlite:///{path}", sqlite_size
        elif kind == "redis":
            port = _free_port()
            server = subprocess.Popen(
                ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                 "--dir", str(tmp)],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            for _ in range(100):
                done = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True)
                if done.returncode == 0:
                    break
                time.sleep(0.05)

            def redis_size() -> int:
                info = subprocess.run(
                    ["redis-cli", "-p", str(port), "INFO", "memory"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
                return int(fields["used_memory"])

            yield f"redis://127.0.0.1:{port}/0", redis_size
        else:
            import psycopg

            schema = f"whscale{uuid.uuid4().hex[:8]}"

            def pg_size() -> int:
                with psycopg.connect(DEFAULT_POSTGRES) as conn:
                    row = conn.execute(
                        "SELECT pg_total_relation_size(%s) + pg_total_relation_size(%s)",
                        (f"{schema}.jobs", f"{schema}.events"),
                    ).fetchone()
                    return int(row[0]) if row else 0

            try:
                yield f"{DEFAULT_POSTGRES}?schema={schema}", pg_size
            finally:
                with psycopg.connect(DEFAULT_POSTGRES, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


async def _median_ms(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def _calls(app: Workhorse, probe: str) -> dict[str, float]:
    backend = app.client.backend
    task = app.get_task("noop")

    async def claim_finish() -> None:
        leases = await backend.claim([QUEUE], "w", 10, 30.0)
        await backend.finish([(lease, Outcome("completed", b"null")) for lease in leases])

    # Enough jobs that every timed claim gets its 10, whatever the store held.
    await backend.enqueue([NewJob(new_job_id(), "noop", QUEUE, b"0") for _ in range(500)])
    return {
        "enqueue one": await _median_ms(lambda: app.enqueue(task, {"n": 0}), 200),
        "claim 10 + finish 10": await _median_ms(claim_finish, 50),
        "get_job": await _median_ms(lambda: app.get_job(probe), 200),
        "newest 50 jobs": await _median_ms(lambda: app.jobs(limit=50), 30),
        "counts()": await _median_ms(lambda: app.counts(), 20),
    }


def _checkpoint(url: str) -> None:
    """What a quiet moment does after a mass write: SQLite folds the WAL into the file,
    PostgreSQL's autovacuum removes the dead row versions (and their index entries)."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    elif url.startswith("postgresql"):
        import psycopg

        schema = url.rsplit("schema=", 1)[1]
        with psycopg.connect(DEFAULT_POSTGRES, autocommit=True) as conn:
            conn.execute(f"VACUUM (ANALYZE) {schema}.jobs")


async def one(
    url: str, size: Callable[[], int], rows: int, checkpoint: bool = False
) -> dict[str, Any]:
    app = Workhorse(url)
    app.add_task(lambda: None, name="noop", queue=QUEUE)
    async with app:
        backend = app.client.backend
        probe = (await app.enqueue("noop", {"n": -1})).id
        empty = await _calls(app, probe)
        if checkpoint:
            _checkpoint(url)
        before = size()
        t0 = time.perf_counter()
        for start in range(0, rows, 1000):
            batch = [
                NewJob(new_job_id(), "noop", QUEUE, orjson.dumps({"n": i}))
                for i in range(start, min(rows, start + 1000))
            ]
            await backend.enqueue(batch)
        fill = time.perf_counter() - t0
        if checkpoint:
            _checkpoint(url)
        grown = size()
        full = await _calls(app, probe)
        t0 = time.perf_counter()
        while leases := await backend.claim([QUEUE], "w", 1000, 600.0):
            await backend.finish([(lease, Outcome("completed", b"null")) for lease in leases])
        finish = time.perf_counter() - t0
        if checkpoint:
            _checkpoint(url)
        finished = await _calls(app, probe)
    return {
        "empty": empty,
        "full": full,
        "finished": finished,
        "fill_s": fill,
        "finish_s": finish,
        "bytes_per_job": (grown - before) / rows,
    }


def _write(rows: int, results: dict[str, dict[str, Any]], command: str, out: Path) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"# Costs with {rows:,} queued or finished jobs",
        "",
        f"Written by `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average at the end {load} on 2 shared cores: compare the columns of one "
        "row, taken minutes apart, not rows of different runs).",
        "",
        f"Each call timed on the empty store, then after {rows:,} queued jobs were added, "
        'then once they were all claimed and finished; medians in ms. Payload `{"n": <i>}`.',
        "",
        "| backend | call | empty | queued | queued/empty | finished | finished/empty |",
        "| --- | --- | --: | --: | --: | --: | --: |",
    ]
    for kind, r in results.items():
        for call, ms in r["empty"].items():
            full, done = r["full"][call], r["finished"][call]
            lines.append(
                f"| {kind} | {call} | {ms:.2f} | {full:.2f} | {full / ms:.2f} "
                f"| {done:.2f} | {done / ms:.2f} |"
            )
    lines += [
        "",
        "| backend | fill time | claim + finish all | store bytes per queued job |",
        "| --- | --: | --: | --: |",
    ]
    for kind, r in results.items():
        lines.append(
            f"| {kind} | {r['fill_s']:.1f} s | {r['finish_s']:.1f} s | {r['bytes_per_job']:,.0f} |"
        )
    lines += [
        "",
        "Bytes per job: Redis `used_memory` (the job's hash, its index entries and its "
        "`job.queued` event); SQLite the file and its WAL; PostgreSQL the jobs and events "
        "tables with their indexes (heap pages are not returned, so this is the growth).",
        "",
    ]
    out.write_text("\n".join(lines) + _kept(out))


def _kept(out: Path) -> str:
    """The page's hand-written sections (from its first ``## `` heading on): a rerun
    replaces the measured tables above them, not the notes."""
    if not out.exists():
        return ""
    old = out.read_text()
    at = old.find("\n## ")
    return "" if at < 0 else old[at + 1 :]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--backends", default="sqlite,redis,postgres")
    p.add_argument(
        "--checkpoint",
        action="store_true",
        help="after each fill: SQLite checkpoints its WAL, PostgreSQL vacuums jobs",
    )
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    results = {}
    for kind in args.backends.split(","):
        with _store(kind) as (url, size):
            results[kind] = asyncio.run(one(url, size, args.rows, args.checkpoint))
        print(kind, orjson.dumps(results[kind]).decode(), flush=True)
    command = f"python -m bench.scale --rows {args.rows} --backends {args.backends}"
    if args.checkpoint:
        command += " --checkpoint"
    _write(args.rows, results, command, args.out)


if __name__ == "__main__":
    main()
