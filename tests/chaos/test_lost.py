"""Scenario: replies lost under real workers (tests/chaos/lost.py). Every job runs once and
ends completed, with every task option at its default, and no outcome is dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.conftest import run
from tests.chaos.lost import lost_replies

pytestmark = pytest.mark.slow


@pytest.mark.timeout(120)
async def test_lost_replies_apply_every_change_once(workdir: Path) -> None:
    report = await run(lost_replies("redis", workdir, losses=8, jobs=400))
    assert report.figures["lost_replies"] == 8
