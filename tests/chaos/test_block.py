"""Scenario 3, and the regression test for the renewal thread: an async handler that
blocks its event loop (``time.sleep``) for two leases keeps its lease, runs once, and
its result is stored. Before the fix its lease expired every time, another worker ran it
again while it still ran, every outcome was refused, and the job never completed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import run
from tests.chaos.scenarios import block

pytestmark = pytest.mark.slow


async def test_blocked_loop_keeps_its_lease(kind: str, workdir: Path) -> None:
    report = await run(block(kind, workdir, duration=0, seed=1))
    assert report.figures["overlapping_runs"] == 0
    assert report.figures["stale_successes"] == 0
    assert report.figures["reruns"] == 0
