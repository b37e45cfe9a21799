"""Scenario 8: 8 processes with 10 slots each claim from one queue, one job per slot
enqueued at once, 100 rounds: no job is claimed twice, none is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import run
from tests.chaos.scenarios import race

pytestmark = pytest.mark.slow


async def test_no_double_claims(kind: str, workdir: Path) -> None:
    report = await run(race(kind, workdir, duration=0, seed=1, rounds=100))
    assert report.figures["double_claims"] == 0
    assert report.figures["processes_claiming"] == 8
