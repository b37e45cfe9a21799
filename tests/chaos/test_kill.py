"""Scenario 1: jobs at a steady rate on 4 worker processes, a random one SIGKILLed every
1.5-3.5 s (2-10 s in the long version) and restarted: no job lost, every duplicate run
explained by a kill, recovery within lease + reclaim_interval + poll_interval. Run twice:
with ``retries=20`` and with a task that keeps every option at its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import run
from tests.chaos.scenarios import kill

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", ["work", "plain"])
async def test_sigkill_loses_no_job(kind: str, workdir: Path, task: str) -> None:
    report = await run(
        kill(kind, workdir, duration=8, seed=7, rate=100, kill_every=(1.5, 3.5), task=task)
    )
    assert report.figures["kills"] >= 2  # one by 3.5 s, the next by 7 s: two in 8 s
    assert report.figures["lost"] == 0
    assert report.figures["in_flight_at_kills"] > 0  # the kills hit running jobs
