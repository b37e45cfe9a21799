"""The PostgreSQL event log's reads with a million events: plans and times.

``python -m bench.pg_event_plan [--events 1000000]`` fills a private schema's log (100
events per transaction, so the log holds many xids as a live one does), ANALYZEs it, then
prints in Markdown the plan (EXPLAIN ANALYZE, BUFFERS) and the median time through the
backend of each reader: events() from the start, from the middle, at the head;
events_head(); run_events(); job_events(); and the sweep's trim (rolled back)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import psycopg

from workhorse.backends.postgres import PostgresBackend, positions

BASE = "postgresql://postgres@127.0.0.1:5432/test"
PER_TRANSACTION = 100


async def fill(conn: psycopg.AsyncConnection[Any], s: str, n: int) -> None:
    for start in range(1, n + 1, PER_TRANSACTION):
        end = min(n, start + PER_TRANSACTION - 1)
        await conn.execute(
            f"INSERT INTO {s}.events (type, job_id, queue, run) "
            "SELECT 'job.completed', 'j' || g, 'default', "
            "CASE WHEN g %% 10 = 0 THEN 'r' || (g / 1000) END "
            "FROM generate_series(%s::int8, %s::int8) g",
            (start, end),
        )


async def median_ms(fn: Any, n: int = 20) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


async def plan(conn: psycopg.AsyncConnection[Any], query: str, params: Any) -> str:
    cur = await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {query}", params)
    return "\n".join(str(row[0]) for row in await cur.fetchall())


async def main(n: int) -> None:
    schema = f"whplan{uuid.uuid4().hex[:8]}"
    b = PostgresBackend(f"{BASE}?schema={schema}&max_events={n}")
    await b.open()
    try:
        async with await psycopg.AsyncConnection.connect(BASE, autocommit=True) as conn:
            t0 = time.perf_counter()
            await fill(conn, schema, n)
            await conn.execute(f"ANALYZE {schema}.events")
            print(f"filled {n:,} events in {time.perf_counter() - t0:.1f} s\n")
            cur = await conn.execute(
                f"SELECT xid::text::int8 FROM {schema}.events WHERE id = %s", (n // 2,)
            )
            row = await cur.fetchone()
            assert row is not None
            middle = positions.join(int(row[0]), n // 2)
            head = await b.events_head()
            q = b._q  # the statements as the backend runs them
            reads: list[tuple[str, str, Any, Any]] = [
                ("events(0, 1000)", q.events, ("0", 0, 1000), lambda: b.events(0, 1000)),
                (
                    "events(middle, 1000)",
                    q.events,
                    (*positions.split(middle), 1000),
                    lambda: b.events(middle, 1000),
                ),
                (
                    "events(head, 1000): nothing new",
                    q.events,
                    (*positions.split(head), 1000),
                    lambda: b.events(head, 1000),
                ),
                ("events_head()", q.events_head, (), b.events_head),
                (
                    "run_events(run, 0, 1000)",
                    q.run_events,
                    ("r500", "0", 0, 1000),
                    lambda: b.run_events("r500", 0, 1000),
                ),
                (
                    "job_events(job)",
                    q.job_events,
                    ("j500000", 100),
                    lambda: b.job_events("j500000"),
                ),
            ]
            for name, query, params, call in reads:
                took = await median_ms(call)
                print(f"### {name}: {took:.2f} ms (median of 20)\n\n```")
                print(await plan(conn, query, params))
                print("```\n")
            sweep = b.sql.sweep()[0]
            hold = {"keep": n // 10, "held": n // 2, "hold": "hookhold:%"}
            await conn.execute(
                f"INSERT INTO {schema}.kv (key, value) VALUES ('hookhold:g', %s)", (str(middle),)
            )
            async with conn.transaction(force_rollback=True):
                print("### sweep's trim, a hold at the middle (rolled back)\n\n```")
                print(await plan(conn, sweep, hold))
                print("```\n")
    finally:
        await b.drop()
        await b.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().events))
