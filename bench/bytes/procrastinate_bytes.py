"""Bytes on disk per queued procrastinate job (its tables and indexes), to set beside
bench.scale's figure for workhorse's PostgreSQL store. Run with the peers' venv, which
``python -m bench.peers`` creates: ``.venv-peers/bin/python bench/bytes/procrastinate_bytes.py``.
It creates and drops a database of its own (default ``procbytes``)."""

from __future__ import annotations

import asyncio
import sys
from importlib import import_module

import psycopg

# Only the peers' venv has it (the project's own install never needs it).
procrastinate = import_module("procrastinate")

SERVER = "postgresql://postgres@127.0.0.1:5432"
SIZE = """select sum(pg_total_relation_size(c.oid)) from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and c.relkind in ('r', 'm', 't')"""


async def measure(url: str, jobs: int) -> float:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    task = app.task(name="noop", queue="bench")(lambda n: None)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        with psycopg.connect(url, autocommit=True) as conn:
            await task.defer_async(n=-1)  # the tables' first pages exist before we measure
            before = conn.execute(SIZE).fetchone()[0]  # type: ignore[index]
            for i in range(0, jobs, 1000):
                await task.batch_defer_async(*[{"n": j} for j in range(i, min(jobs, i + 1000))])
            after = conn.execute(SIZE).fetchone()[0]  # type: ignore[index]
    return float(after - before) / jobs


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    db = sys.argv[2] if len(sys.argv) > 2 else "procbytes"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"drop database if exists {db}")
        admin.execute(f"create database {db}")
    try:
        per_job = asyncio.run(measure(f"{SERVER}/{db}", jobs))
        version = procrastinate.__version__
        print(f"procrastinate {version}: {per_job:.0f} bytes per queued job ({jobs:,} jobs)")
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"drop database if exists {db}")


if __name__ == "__main__":
    main()
