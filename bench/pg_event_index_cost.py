"""What migration 0013's indexes add to each event written (PostgreSQL).

``python -m bench.pg_event_index_cost [--rounds 300] [--events 100000]`` makes two private
schemas with ``--events`` events each: this tree's, and the same with the events indexes
as before 0013 (no ``(xid, id)`` index, the run index on ``(run, id)``). It then times the
server's execution of one insert of 10 events (the publish statement; the claim and finish
statements insert their events the same way) in each, alternating, from ``EXPLAIN
(ANALYZE, TIMING OFF)`` in rolled-back transactions: the load of a shared machine touches
both alike. Prints the medians in microseconds."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid
from typing import Any

import orjson
import psycopg

from workhorse.backends.postgres import PostgresBackend

BASE = "postgresql://postgres@127.0.0.1:5432/test"
BEFORE_0013 = [
    "DROP INDEX {s}.events_position_idx",
    "DROP INDEX {s}.events_run_idx",
    "CREATE INDEX events_run_idx ON {s}.events (run, id) WHERE run IS NOT NULL",
]


async def execution_us(conn: psycopg.AsyncConnection[Any], statement: str, params: Any) -> float:
    async with conn.transaction(force_rollback=True):
        cur = await conn.execute(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {statement}", params)
        row = await cur.fetchone()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else orjson.loads(row[0])
        return float(plan[0]["Execution Time"]) * 1000


async def main(rounds: int, events: int) -> None:
    tag = uuid.uuid4().hex[:8]
    now, before = f"whidx{tag}", f"whidx{tag}b"
    stores = [PostgresBackend(f"{BASE}?schema={s}") for s in (now, before)]
    try:
        async with await psycopg.AsyncConnection.connect(BASE, autocommit=True) as conn:
            for b, s in zip(stores, (now, before), strict=True):
                await b.open()
                if s == before:
                    for ddl in BEFORE_0013:
                        await conn.execute(ddl.format(s=s))
                for start in range(0, events, 1000):
                    await conn.execute(
                        f"INSERT INTO {s}.events (type, job_id) SELECT 'job.completed', "
                        "'j' || g FROM generate_series(%s::int8, %s::int8) g",
                        (start, start + 999),
                    )
                await conn.execute(f"ANALYZE {s}.events")
            n = 10
            params = (
                ["job.completed"] * n,
                [f"job{i}" for i in range(n)],
                ["t"] * n,
                ["default"] * n,
                ['{"attempt": 1}'] * n,
                [None] * n,
                [None] * n,
            )
            texts = {s: b._q.publish for b, s in zip(stores, (now, before), strict=True)}
            took: dict[str, list[float]] = {now: [], before: []}
            for i in range(rounds):
                for s in (now, before) if i % 2 == 0 else (before, now):
                    took[s].append(await execution_us(conn, texts[s], params))
            a, z = statistics.median(took[now]), statistics.median(took[before])
            print(
                f"insert of {n} events, {events:,} in the log, {rounds} rounds: with 0013's "
                f"indexes {a:.1f} us, before {z:.1f} us (+{a - z:.1f} us, {a / z:.3f}x; "
                f"{(a - z) / n:.2f} us per event)"
            )
    finally:
        for b in stores:
            await b.drop()
            await b.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.events))
