"""runtime="command": programs in Node.js and Python, through the helpers in
examples/command/, speaking JSON lines with a real worker on a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.runtimes.conftest import NODE, PROGRAMS, gone
from tests.worker.worker_helpers import running, wait_until
from workhorse import ConfigError, JobCancelled, JobFailed, JobState, Workhorse

pytestmark = pytest.mark.timeout(30)

COMMANDS = {
    "node": [NODE, str(PROGRAMS / "job.js")],
    "python": ["python3", str(PROGRAMS / "job.py")],
}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "command"


def job(data: dict[str, Any]) -> Any:
    """The command's stand-in in the registry: it types the payload, it never runs here."""
    raise AssertionError("a command task runs its program, not this function")


def follow(data: dict[str, Any]) -> str:
    return f"followed {data['from']}"


def register(app: Workhorse, lang: str, **options: Any) -> None:
    app.add_task(job, name="job", runtime="command", command=COMMANDS[lang], **options)
    app.add_task(follow)


@pytest.fixture(params=sorted(COMMANDS))
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_command_job_uses_the_context_and_returns_its_result(
    app: Workhorse, lang: str
) -> None:
    register(app, lang)
    async with running(app, queues=["default"], concurrency=1):
        handle = await app.enqueue("job", {"action": "all", "n": 21})
        done = await app.wait(handle.id, 20)
        assert done.state is JobState.COMPLETED, done.error
        result = done.result
        assert (result["n"], result["attempt"]) == (42, 1)
        assert (result["before"], result["after"]) == (None, 1)  # state read, written, read
        assert done.progress == 40
        lines = [(line["message"], line.get("fields")) for line in done.logs]
        assert (f"hello from {lang}", {"lang": lang}) in lines
        assert ("a line on stderr", {"stream": "stderr"}) in lines  # stderr is logged
        followed = await app.wait(result["follow"], 20)
        assert followed.result == f"followed {lang}"
        events = [e for e in await app.events() if e.type == f"test.{lang}"]
        assert [(e.job_id, e.data) for e in events] == [(handle.id, {"n": 21})]

        # The program stays warm for the next job (it said hello with reuse), and the
        # state it keeps is per job: a second job starts from nothing.
        again = await app.run("job", {"action": "all", "n": 1}, timeout=20)
        assert again["pid"] == result["pid"]
        assert again["before"] is None


async def test_an_error_from_the_program_is_retried_then_fails_with_its_type(
    app: Workhorse, lang: str
) -> None:
    register(app, lang, retries=1, backoff=0)
    async with running(app, queues=["default"], concurrency=1):
        with pytest.raises(JobFailed) as info:
            await app.run("job", {"action": "fail", "n": 7}, timeout=20)
        failed = info.value
        assert failed.type == ("RangeError" if lang == "node" else "ValueError")
        assert failed.message == "bad input: 7"
        assert "job." in failed.traceback  # the program's own stack
        assert failed.job is not None and failed.job.attempts == 2

        with pytest.raises(JobFailed) as info:
            await app.run("job", {"action": "fatal"}, timeout=20)
        assert info.value.job is not None and info.value.job.attempts == 1  # not retried


async def test_a_program_that_exits_without_a_result_fails_with_its_code_and_stderr(
    app: Workhorse, lang: str
) -> None:
    register(app, lang)
    async with running(app, queues=["default"], concurrency=1):
        with pytest.raises(JobFailed) as info:
            await app.run("job", {"action": "exit"}, timeout=20)
        assert info.value.type == "ChildDied"
        assert "exited with code 3" in info.value.message
        assert "about to exit" in info.value.message
        assert await app.run("job", {"action": "noop"}, timeout=20) is None  # a fresh one


async def test_a_command_past_its_timeout_is_killed(
    app: Workhorse, lang: str, tmp_path: Path
) -> None:
    register(app, lang, timeout=1)
    pid_file = tmp_path / "pid"
    async with running(app, queues=["default"], concurrency=1):
        handle = await app.enqueue("job", {"action": "sleep", "pid_file": str(pid_file)})
        failed = await app.wait(handle.id, 20)
        assert failed.state is JobState.FAILED
        assert failed.error is not None
        assert failed.error["message"] == "timed out after 1s"
        await wait_until(lambda: gone(int(pid_file.read_text())), 5, "the program to die")


async def test_a_running_command_job_cancelled_from_another_app_is_killed(
    app: Workhorse, other: Workhorse, lang: str, tmp_path: Path
) -> None:
    register(app, lang, retries=3)
    pid_file = tmp_path / "pid"
    async with running(app, queues=["default"], concurrency=1, lease=1.5) as worker:
        waiter = asyncio.ensure_future(
            app.run("job", {"action": "sleep", "pid_file": str(pid_file)}, timeout=20)
        )
        await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", 20)
        job_id = next(iter(worker._running))
        assert await other.cancel(job_id) is JobState.ACTIVE
        with pytest.raises(JobCancelled):
            await waiter
        record = await other.get_job(job_id)
        assert record is not None
        assert (record.state, record.attempts) == (JobState.CANCELLED, 1)
        await wait_until(lambda: gone(int(pid_file.read_text())), 5, "the program to die")


async def test_a_missing_program_fails_at_once_with_the_reason(app: Workhorse) -> None:
    app.add_task(job, name="job", runtime="command", command=["/nonexistent/prog"], retries=3)
    async with running(app, queues=["default"], concurrency=1):
        with pytest.raises(JobFailed) as info:
            await app.run("job", {}, timeout=20)
        assert info.value.type == "CommandNotFound"
        assert "/nonexistent/prog" in info.value.message
        assert info.value.job is not None and info.value.job.attempts == 1


async def test_warm_programs_are_gone_once_the_worker_stops(app: Workhorse, lang: str) -> None:
    register(app, lang)
    async with running(app, queues=["default"], concurrency=1) as worker:
        await app.run("job", {"action": "noop"}, timeout=20)
        pids = worker._runner.commands.pids
        assert len(pids) == 1
    await wait_until(lambda: all(gone(p) for p in pids), 5, "the programs to be reaped")


@pytest.mark.parametrize(
    "argv", [[NODE, str(EXAMPLES / "wordcount.js")], ["python3", str(EXAMPLES / "wordcount.py")]]
)
async def test_the_shipped_examples_run(app: Workhorse, argv: list[str]) -> None:
    app.add_task(job, name="wordcount", runtime="command", command=argv)
    async with running(app, queues=["default"], concurrency=1):
        first = await app.run("wordcount", {"text": "one two  three"}, timeout=20)
        assert first == {"words": 3, "runs": 1}


async def test_a_program_gets_a_minimal_environment_and_what_the_task_names(
    app: Workhorse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's environment holds the store's URL and other secrets: a program gets
    PATH, HOME, the locale and the like, plus only the names its task lists or sets."""
    monkeypatch.setenv("WORKHORSE_URL", "postgresql://u:s3cret@db/app")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("API_TOKEN", "t0ken")
    monkeypatch.setenv("LC_TIME", "C")
    python = COMMANDS["python"]
    app.add_task(job, name="named", runtime="command", command=python, env=["API_TOKEN"])
    app.add_task(job, name="set", runtime="command", command=python, env={"MODE": "fast"})
    async with running(app, queues=["default"], concurrency=1):
        named = await app.run("named", {"action": "env"}, timeout=20)
        given = await app.run("set", {"action": "env"}, timeout=20)
    for env in (named, given):
        assert "WORKHORSE_URL" not in env and "AWS_SECRET_ACCESS_KEY" not in env
        assert env["WORKHORSE_PROTOCOL"] == "1"
        assert env["PATH"] and env["LC_TIME"] == "C"
    assert named["API_TOKEN"] == "t0ken" and "MODE" not in named
    assert given["MODE"] == "fast" and "API_TOKEN" not in given


def test_env_is_a_command_option(app: Workhorse) -> None:
    with pytest.raises(ConfigError, match="runtime='command'"):
        app.add_task(follow, name="inline_env", env=["API_TOKEN"])
    with pytest.raises(ConfigError, match="list of names or a dict"):
        app.add_task(job, name="bad", runtime="command", command=["true"], env="API_TOKEN")
