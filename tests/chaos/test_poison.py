"""Scenario 6: poison jobs (always raise, ``os._exit(1)``, segfault, out of memory under
``memory_limit``) among healthy ones. In the process runtime each fails after
``max_attempts`` with its own reason and the workers live on; inline, a job that kills its
worker every time (every option at its default) fails for good after ``max_stalls``
reruns instead of looping. No healthy job is lost. The healthy throughput ratio is
printed, not asserted (timing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import run
from tests.chaos.poison import CRASH, MAX_ATTEMPTS, poison

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


async def test_poison_fails_within_max_attempts(kind: str, workdir: Path) -> None:
    # A 1 s baseline: its rate only feeds the printed ratio, which nothing here asserts.
    report = await run(poison(kind, workdir, duration=0, seed=1, crash_jobs=1, baseline_s=1.0))
    f = report.figures
    assert f["most_attempts_used"] == MAX_ATTEMPTS
    assert f["over_max_attempts"] == 0
    assert f["wrong_outcome"] == 0
    assert f["worker_deaths_process_phase"] == 0
    assert f["crash_jobs_failed_after_max"] == len(CRASH)
    assert f["lost"] == 0
