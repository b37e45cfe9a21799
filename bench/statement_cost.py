"""``python -m bench.statement_cost``: claim and finish of this tree against an older commit,
measured where the load matters least.

python -m bench.statement_cost --base main --rounds 200

- PostgreSQL: the server's execution time of the claim and finish statements (10 jobs)
  and of the enqueue of one job,
  from ``EXPLAIN (ANALYZE, TIMING OFF)`` inside a rolled-back transaction, so the same
  leases serve every round; the base's and this tree's statement texts alternate.
- SQLite: this process's CPU per job for claim 10 + finish 10 over 10,000 jobs, each side
  in a fresh interpreter (the base exported with ``git archive``), alternating.

Medians; the PostgreSQL figure leaves out parsing, planning and the commit, which the
counters do not change.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import psycopg

from bench.ab import export
from bench.measure import DEFAULT_POSTGRES
from workhorse.backends.postgres import PostgresBackend
from workhorse.backends.postgres.rows import enqueue_row
from workhorse.backends.sqlite import SQLiteBackend
from workhorse.job import NewJob, Outcome, new_job_id

_SQLITE_JOBS = 10_000


def _statements(tree: Path, name: str) -> ModuleType:
    path = tree / "src" / "workhorse" / "backends" / "postgres" / "statements.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def postgres(base: Path, here: Path, rounds: int) -> dict[str, float]:
    schema = "whcost" + os.urandom(4).hex()
    backend = PostgresBackend(f"{DEFAULT_POSTGRES}?schema={schema}")
    await backend.open()
    sides = {"base": _statements(base, "base_st"), "new": _statements(here, "new_st")}
    texts = {
        k: (
            m.Statements(schema).claim(),
            m.Statements(schema).finish(),
            m.Statements(schema).enqueue(False, True),
        )
        for k, m in sides.items()
    }
    kinds = ("claim", "finish", "enqueue of 1")
    times: dict[str, list[float]] = {f"{k} {s}": [] for k in sides for s in kinds}
    try:
        await backend.enqueue([NewJob(new_job_id(), "t", "q", b"{}") for _ in range(100)])
        leases = await backend.claim(["q"], "w", 10, 30)
        doc = [
            {"id": x.job_id, "token": x.token, "kind": "completed", "result": "bnVsbA==",
             "error": None, "delay": 0.0, "refund": False, "logs": None, "dropped": 0,
             "again": False, "call": "c"}
            for x in leases
        ]  # fmt: skip
        finish_params = (1000, 100_000, orjson.dumps(doc).decode())
        claim_params = {"q": "q", "n": 10, "w": "w", "lease": 30.0}
        one = enqueue_row(NewJob(new_job_id(), "t", "q", b"{}"))
        async with await psycopg.AsyncConnection.connect(DEFAULT_POSTGRES) as conn:
            for i in range(rounds):
                for side in ("base", "new") if i % 2 else ("new", "base"):
                    claim, finish, enqueue = texts[side]
                    for what, sql, params in (
                        ("claim", claim, claim_params),
                        ("finish", finish, finish_params),
                        ("enqueue of 1", enqueue, one),
                    ):
                        async with conn.transaction(force_rollback=True):
                            cur = await conn.execute(
                                "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) " + sql, params
                            )
                            plan = "\n".join(str(r[0]) for r in await cur.fetchall())
                        found = re.search(r"Execution Time: ([\d.]+)", plan)
                        assert found is not None, plan
                        times[f"{side} {what}"].append(float(found.group(1)) * 1000)
    finally:
        await backend.close()
        await backend.drop()
    return {k: statistics.median(v) for k, v in times.items()}


async def sqlite_cpu() -> float:
    """CPU µs per job of claim 10 + finish 10 in this interpreter's workhorse."""
    with tempfile.TemporaryDirectory() as tmp:
        backend = SQLiteBackend(f"sqlite:///{tmp}/cost.db")
        await backend.open()
        for _ in range(0, _SQLITE_JOBS, 1000):
            await backend.enqueue([NewJob(new_job_id(), "t", "q", b"{}") for _ in range(1000)])
        done = Outcome("completed", b"null")
        t0 = time.process_time()
        while leases := await backend.claim(["q"], "w", 10, 30):
            await backend.finish([(lease, done) for lease in leases])
        cpu = time.process_time() - t0
        await backend.close()
    return cpu / _SQLITE_JOBS * 1e6


def sqlite(base: Path, here: Path, rounds: int) -> dict[str, float]:
    out: dict[str, list[float]] = {"base": [], "new": []}
    for i in range(rounds):
        for side in ("base", "new") if i % 2 else ("new", "base"):
            tree = base if side == "base" else here
            env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tree / "src"), str(here)))}
            done = subprocess.run(
                [sys.executable, "-m", "bench.statement_cost", "--sqlite-one"],
                cwd=here, env=env, capture_output=True, check=True, text=True,
            )  # fmt: skip
            out[side].append(float(done.stdout.split()[-1]))
    return {f"{k} cpu µs/job": statistics.median(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.statement_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--base", default="main")
    p.add_argument("--rounds", type=int, default=200, help="PostgreSQL statement pairs")
    p.add_argument("--sqlite-rounds", type=int, default=4)
    p.add_argument("--sqlite-one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sqlite_one:
        print(f"{asyncio.run(sqlite_cpu()):.1f}")
        return
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        base = export(args.base, Path(tmp))
        results: dict[str, Any] = {"load": os.getloadavg()}
        results["postgres µs per statement (claim, finish: 10 jobs)"] = asyncio.run(
            postgres(base, here, args.rounds)
        )
        if args.sqlite_rounds:
            results["sqlite"] = sqlite(base, here, args.sqlite_rounds)
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
