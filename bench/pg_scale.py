"""Claim and query with a million finished jobs in the PostgreSQL table.

``python -m bench.pg_scale [--rows 1000000]`` fills a private schema with finished jobs
(generate_series, one statement), ANALYZEs it, then times the hot statements through the
backend and writes their figures and query plans to docs/benchmarks-postgres-scale.md."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from workhorse import JobState
from workhorse.backends.postgres import PostgresBackend
from workhorse.job import NewJob, Outcome, new_job_id

BASE = "postgresql://postgres@127.0.0.1:5432/test"
OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-postgres-scale.md"


def ms(samples: list[float]) -> str:
    p99 = sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]
    return f"{statistics.median(samples) * 1000:.2f} ms (p99 {p99 * 1000:.2f})"


async def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def main(rows: int) -> None:
    schema = f"whscale{uuid.uuid4().hex[:8]}"
    backend = PostgresBackend(f"{BASE}?schema={schema}")
    await backend.open()
    lines: list[str] = []
    try:

        async def claim_finish() -> None:
            leases = await backend.claim(["default"], "w", 10, 30)
            await backend.finish([(le, Outcome("completed", b"null")) for le in leases])

        await backend.enqueue(
            [NewJob(new_job_id(), "noop", "default", b"null") for _ in range(1000)]
        )
        empty = await timed(claim_finish, 100)  # side by side: the same calls, no history
        counts_empty = await timed(lambda: backend.counts(), 5)
        t0 = time.perf_counter()
        async with await psycopg.AsyncConnection.connect(BASE, autocommit=True) as conn:
            await conn.execute(
                f"""INSERT INTO {schema}.jobs (id, task, queue, state, data, attempts,
                        finished_at, created_at, result)
                    SELECT 'old' || g, 'noop', 'default',
                           CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END,
                           '{{}}'::bytea, 1, now() - (g || ' ms')::interval,
                           now() - (g || ' ms')::interval, 'null'::bytea
                    FROM generate_series(1, {rows}) g"""
            )
            # Rows written around the backend: their counts too (migration 0010).
            await conn.execute(
                f"""INSERT INTO {schema}.job_counts (queue, state, n) SELECT queue, state,
                        count(*) FROM {schema}.jobs WHERE id LIKE 'old%' GROUP BY 1, 2"""
            )
            await conn.execute(f"ANALYZE {schema}.jobs")
            fill = time.perf_counter() - t0
            await backend.enqueue(
                [NewJob(new_job_id(), "noop", "default", b"null") for _ in range(2000)]
            )
            await conn.execute(f"ANALYZE {schema}.jobs")

            claims = await timed(claim_finish, 100)
            newest = await timed(lambda: backend.query(limit=50), 50)
            by_state = await timed(lambda: backend.query(state=JobState.FAILED, limit=50), 50)
            page = await timed(
                lambda: backend.query(state=JobState.COMPLETED, limit=50, offset=5000), 20
            )
            counts = await timed(lambda: backend.counts(), 5)
            plans = {}
            for name, sql in {
                "claim (the inner select)": f"""SELECT id FROM {schema}.jobs WHERE queue =
                    'default' AND state = 'queued' AND run_at <= now() ORDER BY priority
                    DESC, run_at, seq LIMIT 10 FOR UPDATE SKIP LOCKED""",
                "newest 50 failed": f"""SELECT id FROM {schema}.jobs WHERE state = 'failed'
                    ORDER BY created_at DESC, id DESC LIMIT 50""",
                "purge candidates": f"""SELECT id FROM {schema}.jobs WHERE state =
                    'completed' AND finished_at < now() - interval '1 day' LIMIT 1000""",
            }.items():
                cur = await conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql)
                plans[name] = "\n".join(r[0] for r in await cur.fetchall())
        lines += [
            "# PostgreSQL with a million finished jobs",
            "",
            f"Command: `python -m bench.pg_scale --rows {rows}` (one private schema, durable "
            "commits, PostgreSQL 15 on loopback, 2 shared cores). Medians of repeated calls.",
            "",
            f"- filled {rows:,} finished rows (10% failed) in {fill:.1f} s, then 2,000 queued",
            "- load average (1, 5, 15 min) at the end: "
            + ", ".join(f"{x:.1f}" for x in os.getloadavg())
            + " on 2 cores (other work shares the machine: compare rows of one run)",
            "",
            "| operation | time |",
            "| --- | --: |",
            f"| claim 10 + finish 10, empty table (same run, before filling) | {ms(empty)} |",
            f"| claim 10 + finish 10, with the million rows | {ms(claims)} |",
            f"| newest 50 jobs | {ms(newest)} |",
            f"| newest 50 failed jobs | {ms(by_state)} |",
            f"| completed jobs, page at offset 5,000 | {ms(page)} |",
            f"| counts(), 1,000 jobs (same schema, before the fill) | {ms(counts_empty)} |",
            f"| counts(), with the million rows (per-state counters) | {ms(counts)} |",
            "",
            "Claim and the listings use the partial and state indexes (plans below), so the",
            "finished rows stay out of their way; compare the two claim rows. counts() reads",
            "the per-state counters (migration 0010), not the rows: compare the two counts rows.",
            "",
        ]
        for name, plan in plans.items():
            lines += [f"## Plan: {name}", "", "```", plan, "```", ""]
        OUT.write_text("\n".join(lines))
        print("\n".join(lines[:20]))
    finally:
        await backend.drop()
        await backend.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().rows))
