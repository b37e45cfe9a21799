"""The pytest plugin, used as a user would: the example project's own tests run under it
(a separate pytest session), and the demo's tasks tested with the ``workhorse`` fixture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workhorse import Workhorse
from workhorse.pytest_plugin import Harness

EXAMPLE = Path(__file__).parents[2] / "examples" / "signup"


@pytest.fixture
def workhorse_app() -> Workhorse:
    from workhorse.demo_tasks import app

    return app


def test_the_example_projects_tests_pass_with_the_plugin() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", ".",
         "-o", "asyncio_mode=auto", "-W", "error", "."],
        cwd=EXAMPLE,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout.decode()[-3000:]
    assert b"4 passed" in done.stdout


async def test_demo_tasks_under_the_plugin(workhorse: Harness) -> None:
    handle = await workhorse.app.enqueue("flaky", {"service": "db"})
    await workhorse.run_until_idle()
    workhorse.clock.advance(1)  # its backoff (0.2 s, then 0.4 s) on the fake clock
    await workhorse.run_until_idle()
    workhorse.clock.advance(1)
    await workhorse.run_until_idle()
    job = await workhorse.app.get_job(handle.id)
    assert job is not None
    assert job.result == {"service": "db", "attempt": 3}
    await workhorse.assert_enqueued("flaky", count=1)
    await workhorse.assert_not_enqueued("square")
    with pytest.raises(AssertionError, match="expected 2 job"):
        await workhorse.assert_enqueued("flaky", count=2)


async def test_eager_mode_runs_a_job_before_enqueue_returns(workhorse: Harness) -> None:
    workhorse.eager()
    handle = await workhorse.app.enqueue("square", 7)
    job = await workhorse.app.get_job(handle.id)
    assert job is not None and job.result == 49


async def test_the_app_gets_its_own_store_back() -> None:
    from workhorse.demo_tasks import app

    assert not app.client.backend_given  # the memory store was the test's only
