"""Scenario 2: a worker SIGSTOPped past its lease while another reruns and finishes its
jobs; after SIGCONT each of its finishes is refused, and the store keeps the rerun's
result."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import run
from tests.chaos.scenarios import stop

pytestmark = pytest.mark.slow


async def test_stale_finishes_are_refused(kind: str, workdir: Path) -> None:
    report = await run(stop(kind, workdir, duration=0, seed=1, jobs=5))
    assert report.figures["stale_finishes_accepted"] == 0
    assert report.figures["stale_finishes_refused"] == 5
