"""runtime="process": a warm pool of child processes that a timeout, a cancel or a crash
can take down without taking the worker with it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.runtimes import jobs, slow_import
from tests.runtimes.conftest import gone
from tests.worker.worker_helpers import running, wait_until
from workhorse import JobCancelled, JobFailed, JobState, Workhorse

pytestmark = pytest.mark.timeout(30)

LEASE = 1.5  # renewals every 0.5 s: how soon a worker hears of a cancel


async def test_a_cpu_bound_job_past_its_timeout_is_killed_and_its_child_replaced(
    app: Workhorse,
) -> None:
    app.add_task(jobs.pid, runtime="process")
    app.add_task(jobs.spin, runtime="process", timeout=1)
    async with running(app, queues=["default"], concurrency=1) as worker:
        first = await app.run("pid", timeout=20)
        handle = await app.enqueue("spin", 30)
        job = await app.wait(handle.id, 10)
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert job.error["message"] == "timed out after 1s"
        assert gone(first)  # the child that ran it was killed, not left spinning
        second = await app.run("pid", timeout=20)
        assert second != first  # a fresh child took its place
        assert worker.active == 0


async def test_the_same_child_serves_job_after_job(app: Workhorse) -> None:
    app.add_task(jobs.pid, runtime="process")
    app.add_task(jobs.double, runtime="process")
    async with running(app, queues=["default"], concurrency=1):
        pids = {await app.run("pid", timeout=20) for _ in range(5)}
        assert len(pids) == 1
        assert pids != {os.getpid()}
        assert await app.run("double", 21, timeout=20) == 42


async def test_a_segfaulting_child_fails_its_attempt_and_the_next_job_runs(
    app: Workhorse,
) -> None:
    app.add_task(jobs.segfault, runtime="process", retries=1, backoff=0)
    app.add_task(jobs.double, runtime="process")
    async with running(app, queues=["default"], concurrency=1):
        handle = await app.enqueue("segfault")
        job = await app.wait(handle.id, 20)
        assert job.state is JobState.FAILED
        assert job.attempts == 2  # it died every time, and stopped at max_attempts
        assert job.error is not None
        assert job.error["type"] == "ChildDied"
        assert "died of SIGSEGV" in job.error["message"]
        assert await app.run("double", 4, timeout=20) == 8


async def test_a_child_that_exits_names_its_exit_code(app: Workhorse) -> None:
    app.add_task(jobs.hard_exit, runtime="process")
    app.add_task(jobs.double, runtime="process")
    async with running(app, queues=["default"], concurrency=1):
        with pytest.raises(JobFailed) as info:
            await app.run("hard_exit", 3, timeout=20)
        assert "exited with code 3" in str(info.value)
        assert await app.run("double", 5, timeout=20) == 10


async def test_a_job_over_its_memory_limit_fails_and_the_worker_goes_on(
    app: Workhorse,
) -> None:
    app.add_task(jobs.allocate, runtime="process", memory_limit=1 << 30)
    async with running(app, queues=["default"], concurrency=1):
        with pytest.raises(JobFailed) as info:
            await app.run("allocate", 2048, timeout=20)  # 2 GiB under a 1 GiB cap
        assert info.value.type == "MemoryError"
        assert await app.run("allocate", 16, timeout=20) == 16 << 20  # the cap still holds


async def test_errors_raised_in_the_child_keep_their_type_and_traceback(
    app: Workhorse,
) -> None:
    app.add_task(jobs.fails, runtime="process")
    async with running(app, queues=["default"], concurrency=1):
        with pytest.raises(JobFailed) as info:
            await app.run("fails", "no such user", timeout=20)
        failed = info.value
        assert (failed.type, failed.message) == ("ValueError", "no such user")
        assert "in fails" in failed.traceback


async def test_log_progress_and_enqueue_work_from_the_child(app: Workhorse) -> None:
    app.add_task(jobs.chatty, runtime="process")
    app.add_task(jobs.double, runtime="process")
    async with running(app, queues=["default"], concurrency=1):
        handle = await app.enqueue("chatty", {})
        job = await app.wait(handle.id, 20)
        assert job.state is JobState.COMPLETED, job.error
        assert job.result["pid"] != os.getpid()
        assert job.result["attempt"] == 1
        assert job.progress == 50
        messages = [line["message"] for line in job.logs]
        assert messages == ["starting", "done"]
        assert job.logs[0]["fields"] == {"step": 1}
        follow = await app.wait(job.result["follow"], 20)
        assert follow.result == 42


async def test_a_running_process_job_cancelled_from_another_app_is_killed(
    app: Workhorse, other: Workhorse, tmp_path: Path
) -> None:
    app.add_task(jobs.pid_file, runtime="process", retries=3)
    pid_file = tmp_path / "pid"
    async with running(app, queues=["default"], concurrency=1, lease=LEASE) as worker:
        waiter = asyncio.ensure_future(app.run("pid_file", str(pid_file), timeout=20))
        await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", 20)
        pid = int(pid_file.read_text())
        job_id = next(iter(worker._running))
        assert await other.cancel(job_id) is JobState.ACTIVE
        with pytest.raises(JobCancelled):
            await waiter
        job = await other.get_job(job_id)
        assert job is not None
        assert (job.state, job.attempts) == (JobState.CANCELLED, 1)  # not retried
        assert gone(pid)


async def test_children_are_gone_once_the_worker_stops(app: Workhorse) -> None:
    app.add_task(jobs.pid, runtime="process")
    app.add_task(jobs.spin, runtime="process")
    async with running(app, queues=["default"], concurrency=3) as worker:
        await app.run("pid", timeout=20)
        busy = await app.enqueue("spin", 30)  # still running when the worker stops
        pool = worker._runner.process_pool
        await wait_until(lambda: bool(pool._busy), 20)
        pids = pool.pids
    assert pids and all(gone(p) for p in pids)
    job = await app.get_job(busy.id)
    assert job is not None
    assert job.state is JobState.QUEUED  # shutdown put it back, attempt refunded


async def test_a_wait_bound_never_lengthens_the_tasks_timeout(app: Workhorse) -> None:
    """run(timeout=30) on a task declared timeout=1: the attempt still ends at 1 s."""
    app.add_task(jobs.spin, runtime="process", timeout=1)
    async with running(app, queues=["default"], concurrency=1):
        started = time.monotonic()
        with pytest.raises(JobFailed, match="timed out after 1s"):
            await app.run("spin", 25, timeout=30)
        assert time.monotonic() - started < 20


async def test_an_explicit_attempt_timeout_is_the_callers_to_set(app: Workhorse) -> None:
    """Only the attempt's own timeout (task.options(timeout=...)), not the wait, replaces
    the task's."""
    spin = app.add_task(jobs.spin, runtime="process", timeout=0.5)
    async with running(app, queues=["default"], concurrency=1):
        assert await spin.options(timeout=20).run(1.5, timeout=30) > 0


async def test_a_job_file_with_runtime_process_runs_in_a_child(
    app: Workhorse, tmp_path: Path
) -> None:
    """runtime = "process" in a discovered file: the job runs in a pooled child."""
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "where.py").write_text(
        'import os\n\nruntime = "process"\n\n\ndef handler():\n    return os.getpid()\n'
    )
    app.discover(jobs_dir)
    async with running(app, queues=["default"], concurrency=1):
        pid = await app.run("where", timeout=20)
    assert pid != os.getpid()


async def test_a_process_task_without_a_timeout_ends_at_the_job_timeout(url: str) -> None:
    """The job_timeout setting bounds a task that sets no timeout, and kills its child."""
    async with Workhorse(url, poll_interval=0.05, process_pool=1, job_timeout=1) as app:
        app.add_task(jobs.pid, runtime="process")
        app.add_task(jobs.spin, runtime="process")
        async with running(app, queues=["default"], concurrency=1):
            child = await app.run("pid", timeout=20)
            handle = await app.enqueue("spin", 25)  # no limit of its own on the record
            job = await app.wait(handle.id, 20)
            assert job.error is not None and job.error["message"] == "timed out after 1s"
            assert gone(child)


async def test_a_childs_log_lines_are_bounded_as_the_workers_own(url: str) -> None:
    app = Workhorse(url, poll_interval=0.05, process_pool=1, max_log_lines=50)
    app.add_task(jobs.chattier, runtime="process")
    async with app, running(app, queues=["default"], concurrency=1):
        job = await app.wait((await app.enqueue("chattier", 500)).id, 20)
    assert job.state is JobState.COMPLETED, job.error
    assert len(job.logs) == 51  # the newest 50 and the notice
    assert job.logs[-1]["message"] == "line 499"
    assert job.logs[0]["fields"] == {"dropped": 450}


async def test_a_childs_start_does_not_count_in_the_tasks_timeout(app: Workhorse) -> None:
    """The first job waits for a child importing the app (1.5 s here); its timeout of 1 s
    counts from the child's start of the job, so it completes."""
    app.add_task(slow_import.quick, runtime="process", timeout=1)
    async with running(app, queues=["default"], concurrency=1):
        assert await app.run("quick", timeout=20) == "ok"
