"""The signup project's tests, with workhorse's pytest plugin (the ``workhorse`` fixture)."""

from __future__ import annotations

from jobs import SENT, signup

from workhorse import JobState
from workhorse.pytest_plugin import Harness


async def test_signup_enqueues_a_welcome_email(workhorse: Harness) -> None:
    await signup("ada@example.com")
    await workhorse.assert_enqueued("send_welcome", data={"to": "ada@example.com"}, count=1)
    assert SENT == []  # nothing runs until a worker does


async def test_the_reminder_goes_a_day_later(workhorse: Harness) -> None:
    await signup("ada@example.com")
    assert await workhorse.run_until_idle() == 1
    assert SENT == ["welcome:ada@example.com"]
    workhorse.clock.advance(86_399)
    assert await workhorse.run_until_idle() == 0  # not due yet
    workhorse.clock.advance(1)
    await workhorse.run_until_idle()
    assert SENT == ["welcome:ada@example.com", "reminder:ada@example.com"]


async def test_a_failing_send_is_retried_after_its_backoff(workhorse: Harness) -> None:
    job_id = await signup("bob@flaky.example")
    await workhorse.run_until_idle()
    job = await workhorse.app.get_job(job_id)
    assert job is not None
    assert job.state is JobState.SCHEDULED  # retried in 30 s
    workhorse.clock.advance(30)
    await workhorse.run_until_idle()
    workhorse.clock.advance(30)
    await workhorse.run_until_idle()
    job = await workhorse.app.get_job(job_id)
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.attempts == 3


async def test_eager_mode_runs_jobs_at_enqueue(workhorse: Harness) -> None:
    workhorse.eager()
    await signup("eve@example.com")
    assert SENT == ["welcome:eve@example.com"]  # ran before signup() returned
    await workhorse.assert_enqueued("send_reminder", data={"to": "eve@example.com"})
    await workhorse.assert_not_enqueued("unknown_task")
