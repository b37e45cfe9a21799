"""Scenario 4: the store goes away under running workers and comes back; every worker
claims again by itself (none restarted, none left idle) and no acknowledged job is lost.

Redis and PostgreSQL run as private servers behind a TCP proxy that cuts (RST), stalls
(holds every byte) or blackholes (a half-open path: the connections that lived through it
never answer again); ``restart`` stops the server and starts it again: Redis with
persistence (``appendonly yes``, ``appendfsync everysec``), so the jobs it held, queued and
active, come back with it and finish (``in_store_at_restart`` counts them; a Redis without
persistence comes back empty: tests/acceptance/test_redis_restart.py). SQLite has no
server: another process holds its write lock instead. The PostgreSQL blackhole is the
regression test for ``call_timeout``: before it, a statement on a half-open connection
waited forever and the worker sat idle for good."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import run
from tests.chaos.scenarios import outage

pytestmark = pytest.mark.slow

CASES = [
    ("sqlite", "lock"),
    ("redis", "cut"),
    ("redis", "stall"),
    ("redis", "restart"),
    ("postgres", "cut"),
    ("postgres", "stall"),
    ("postgres", "restart"),
    ("postgres", "blackhole"),
]


# Each pooled PostgreSQL connection that lived through a blackhole costs one statement
# call_timeout (3 s here) plus psycopg's 5 s wait for its cancel before it is discarded.
LIMIT = {"blackhole": 30.0}


@pytest.mark.parametrize(("backend", "fault"), CASES)
async def test_workers_resume_after_the_fault(backend: str, fault: str, workdir: Path) -> None:
    limit = LIMIT.get(fault, 15.0)
    report = await run(
        outage(backend, workdir, duration=0, seed=1, faults=(fault,), resume_limit=limit)
    )
    assert report.figures[f"{fault}_heal_to_claim_s"] < limit
    assert report.figures["lost"] == 0
    if fault == "restart":
        assert report.figures["in_store_at_restart"] > 0
