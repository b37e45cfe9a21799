"""Scenario 7, short: 25 s at 100 jobs/s with reclaim and retention running. After the
warm-up no worker's file descriptors and no server connections grow (beyond a small
slack), no job is lost, and on SQLite no "database is locked" reaches the producer or a
worker's log. Memory growth is printed; only a real leak (50 MiB in the run) fails it.
The long version: ``python -m tests.chaos --scenario soak --duration 600``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import run
from tests.chaos.soak import soak

pytestmark = pytest.mark.slow

LEAK_MIB = 50.0


async def test_nothing_grows(kind: str, workdir: Path) -> None:
    report = await run(soak(kind, workdir, duration=25, seed=1))
    f = report.figures
    assert f["lost"] == 0
    assert f["database_is_locked"] == 0
    assert f["fd_growth"] <= 4
    assert f.get("connection_growth", 0) <= 2
    assert f["rss_growth_mib"] < LEAK_MIB
