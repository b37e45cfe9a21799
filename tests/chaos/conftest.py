"""Short versions of the chaos scenarios: a few seconds each, every backend, real worker
processes. Under CI=true a missing server or binary fails instead of skipping."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest

from tests.chaos.harness import BACKENDS, Report, Unavailable
from tests.chaos.servers import MissingBinary
from tests.conftest import IN_CI


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def run(scenario: Awaitable[Report]) -> Report:
    """Await a scenario, print its figures, and fail the test on any broken guarantee."""
    try:
        report = await scenario
    except (Unavailable, MissingBinary) as exc:
        if IN_CI:
            pytest.fail(f"{exc} (CI=true: a missing server fails the run)")
        pytest.skip(str(exc))
    print("\n" + report.line())
    assert not report.failures, report.line()
    return report


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
