"""The command line against a real SQLite file (and real worker processes where a worker
is needed). Every command goes through click exactly as a user's shell would."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from workhorse import Workhorse
from workhorse import client as app_module
from workhorse.cli import main

needs_sqlite = pytest.mark.skipif(
    importlib.util.find_spec("workhorse.backends.sqlite") is None,
    reason="workhorse.backends.sqlite not written yet",
)

TASKS = """
from pydantic import BaseModel
from workhorse import JobContext, Workhorse

app = Workhorse()


class Pair(BaseModel):
    a: int
    b: int


@app.task
async def add(data: Pair) -> int:
    return data.a + data.b


@app.task
async def slow(data: dict, ctx: JobContext) -> str:
    import asyncio
    for i in range(1, 6):
        await asyncio.sleep(0.05)
        await ctx.progress(i * 20)
    return "done"


@app.task
def boom(data: dict) -> None:
    raise KeyError("no such customer: " + data["who"])
"""

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class Cli:
    """Runs ``workhorse`` commands in-process against one SQLite file."""

    def __init__(self, folder: Path, module: str) -> None:
        self.folder = folder
        self.module = module
        self.url = f"sqlite:///{folder / 'cli.db'}"
        self.app = f"{module}:app"

    def __call__(self, *args: str, app: bool = True, ok: bool = True) -> Result:
        argv = [*args, "--url", self.url]
        if app:
            argv += ["--app", self.app]
        result = CliRunner().invoke(main, argv, prog_name="workhorse")
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return orjson.loads(self(*args, "--json").stdout)

    def enqueue(self, task: str, data: str, *extra: str) -> str:
        job_id = self("enqueue", task, "--data", data, *extra).stdout.strip()
        assert JOB_ID.match(job_id), job_id
        return job_id

    def worker(self, *extra: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "WORKHORSE_POLL_INTERVAL": "0.1", "WORKHORSE_URL": self.url}
        return subprocess.Popen(
            [sys.executable, "-m", "workhorse", "worker", self.app, *extra],
            cwd=self.folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    module = f"cli_tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI puts the cwd on it
    for name in list(os.environ):
        if name.startswith("WORKHORSE_"):
            monkeypatch.delenv(name)
    made = Cli(tmp_path, module)
    asyncio.run(create_store(made.url))  # commands that only look refuse a missing store
    yield made
    sys.modules.pop(module, None)


async def create_store(url: str) -> None:
    app = Workhorse(url)
    await app.open()
    await app.close()


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"worker did not exit within 20s of SIGTERM:\n{output.decode()}")
    return proc.returncode, output.decode()


@pytest.fixture
def worker(cli: Cli) -> Iterator[subprocess.Popen[bytes]]:
    proc = cli.worker()
    deadline = time.monotonic() + 20
    while not cli.json("status")["workers"]:
        if proc.poll() is not None or time.monotonic() > deadline:
            code, output = stop(proc)
            pytest.fail(f"worker did not start (exit {code}):\n{output}")
        time.sleep(0.05)
    yield proc
    stop(proc)


# -- producing and inspecting without a worker ----------------------------------------------
@needs_sqlite
def test_enqueue_prints_an_id_that_jobs_and_job_show(cli: Cli) -> None:
    job_id = cli.enqueue("add", '{"a": 2, "b": 3}')

    listed = cli("jobs", app=False).stdout
    assert job_id in listed
    assert "queued" in listed

    (record,) = cli.json("jobs")
    assert record["id"] == job_id
    assert record["task"] == "add"
    assert record["data"] == {"a": 2, "b": 3}
    assert record["state"] == "queued"

    detail = cli("job", job_id, app=False).stdout
    assert job_id in detail
    assert '"a":2' in detail
    assert cli.json("job", job_id)["attempts"] == 0


@needs_sqlite
def test_user_text_is_shown_as_is_not_as_markup(cli: Cli) -> None:
    job_id = cli.enqueue("slow", '{"note": "[bold]x[/bold] and [/oops]"}')
    assert "[bold]x[/bold] and [/oops]" in cli("job", job_id).stdout


@needs_sqlite
def test_enqueue_options_reach_the_job(cli: Cli) -> None:
    job_id = cli.enqueue(
        "add", '{"a": 1, "b": 1}', "--queue", "other", "--priority", "7", "--delay", "60"
    )
    record = cli.json("job", job_id)
    assert record["queue"] == "other"
    assert record["priority"] == 7
    assert record["state"] == "scheduled"
    assert [j["id"] for j in cli.json("jobs", "--queue", "other")] == [job_id]
    assert cli.json("jobs", "--queue", "default") == []


@needs_sqlite
def test_status_counts_jobs_per_queue_and_state(cli: Cli) -> None:
    for n in range(3):
        cli.enqueue("add", f'{{"a": {n}, "b": 0}}')
    cli.enqueue("add", '{"a": 0, "b": 0}', "--queue", "other")

    status = cli.json("status")
    assert status["counts"]["default"]["queued"] == 3
    assert status["counts"]["other"]["queued"] == 1
    assert status["workers"] == []
    table = cli("status", app=False).stdout
    assert "default" in table
    assert "other" in table
    assert "no live workers" in table


@needs_sqlite
def test_jobs_filters_by_state_and_task_and_pages(cli: Cli) -> None:
    ids = [cli.enqueue("add", f'{{"a": {n}, "b": 0}}') for n in range(3)]
    other = cli.enqueue("slow", "{}")
    assert [j["id"] for j in cli.json("jobs", "--task", "slow")] == [other]
    newest_first = [j["id"] for j in cli.json("jobs", "--task", "add")]
    assert newest_first == ids[::-1]
    assert cli.json("jobs", "--state", "failed") == []


@needs_sqlite
def test_jobs_pages_by_cursor_each_job_once_while_jobs_arrive(cli: Cli) -> None:
    ids = [cli.enqueue("add", f'{{"a": {n}, "b": 0}}') for n in range(5)]
    seen: list[str] = []
    args = ["jobs", "--task", "add", "--limit", "2", "--json"]
    while True:
        page = cli(*args)
        seen += [j["id"] for j in orjson.loads(page.stdout)]
        cli.enqueue("add", '{"a": 9, "b": 9}')  # newer than every page: shifts nothing
        if "next page: --cursor " not in page.stderr:
            break
        cursor = page.stderr.split("next page: --cursor ", 1)[1].split()[0]
        args = ["jobs", "--task", "add", "--limit", "2", "--json", "--cursor", cursor]
    assert seen == ids[::-1]
    refused = cli("jobs", "--cursor", "page-2", ok=False)
    assert refused.exit_code != 0
    assert "--cursor" in refused.output


@needs_sqlite
def test_retry_with_a_new_payload_checks_it_and_records_the_old(cli: Cli) -> None:
    job_id = cli.enqueue("add", '{"a": 1, "b": 2}')
    cli("cancel", job_id)
    refused = cli("retry", job_id, "--data", '{"a": "one"}', ok=False)
    assert refused.exit_code == 1 and "invalid payload for task 'add'" in refused.output
    assert cli.json("job", job_id)["state"] == "cancelled"
    done = cli("retry", job_id, "--data", '{"a": 5, "b": 6}', "--by", "ada")
    assert "queued again" in done.stdout
    job = cli.json("job", job_id)
    assert (job["state"], job["data"]) == ("queued", {"a": 5, "b": 6})


@needs_sqlite
def test_pause_resume_cancel_retry_purge(cli: Cli) -> None:
    cli("pause", "default")
    assert cli.json("status")["paused"] == ["default"]
    job_id = cli.enqueue("add", '{"a": 1, "b": 2}')
    assert "(paused)" in cli("status").stdout
    cli("resume", "default")
    assert cli.json("status")["paused"] == []

    assert "cancelled" in cli("cancel", job_id).stdout
    assert cli.json("job", job_id)["state"] == "cancelled"
    assert "queued again" in cli("retry", job_id).stdout
    assert cli.json("job", job_id)["state"] == "queued"
    refused = cli("retry", job_id, ok=False)
    assert refused.exit_code == 1
    assert "only failed or cancelled jobs can be retried" in refused.output

    cli("cancel", job_id)
    nothing = cli("purge", ok=False)
    assert nothing.exit_code == 2
    assert "--older-than" in nothing.output
    assert "deleted 0 job(s)" in cli("purge", "--older-than", "3600").stdout
    assert "deleted 1 job(s)" in cli("purge", "--keep", "0").stdout
    missing = cli("job", job_id, ok=False)
    assert missing.exit_code == 1
    assert f"no job {job_id}" in missing.output


def shell(cli: Cli, *args: str, app: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``workhorse`` command in a subprocess, as a user's shell runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKHORSE_")}
    return subprocess.run(
        [sys.executable, "-m", "workhorse", *args, "--url", cli.url, "--app", app or cli.app],
        cwd=cli.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@needs_sqlite
def test_control_commands_say_what_happened_and_fail_when_nothing_was_done(cli: Cli) -> None:
    typo = shell(cli, "pause", "defualt")
    assert typo.returncode == 1
    assert "no queue 'defualt'" in typo.stderr
    assert "default" in typo.stderr and "--force" in typo.stderr
    assert cli.json("status")["paused"] == []
    assert shell(cli, "pause", "later", "--force").returncode == 0
    again = shell(cli, "pause", "later")
    assert again.returncode == 1
    assert "already paused" in again.stderr
    assert shell(cli, "resume", "later").returncode == 0
    idle = shell(cli, "resume", "later")
    assert idle.returncode == 1
    assert "is not paused" in idle.stderr

    job_id = cli.enqueue("add", '{"a": 1, "b": 2}')
    first = shell(cli, "cancel", job_id)
    assert first.returncode == 0, first.stderr
    assert "cancelled" in first.stdout
    twice = shell(cli, "cancel", job_id)
    assert twice.returncode == 1
    assert "already cancelled; nothing to cancel" in twice.stderr


def test_a_task_on_a_queue_the_worker_skips_names_the_queues_option(cli: Cli) -> None:
    (cli.folder / "mail_tasks.py").write_text(
        "from workhorse import Workhorse\n"
        "app = Workhorse()\n"
        "@app.task(queue='mail')\n"
        "def send(data: dict) -> None: ...\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKHORSE_")}
    started = subprocess.run(
        [sys.executable, "-m", "workhorse", "worker", "mail_tasks:app", "--url", cli.url],
        cwd=cli.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode != 0
    assert "--queues default,priority,mail" in started.stderr
    assert "WORKHORSE_KNOWN_QUEUES=mail" in started.stderr


@needs_sqlite
def test_progress_is_shown_as_a_person_reads_it(cli: Cli) -> None:
    job_id = cli.enqueue("add", '{"a": 1, "b": 2}')

    async def report_progress() -> None:
        from workhorse.backends import backend_from_url

        backend = backend_from_url(cli.url)
        await backend.open()
        (lease,) = await backend.claim(["default"], "w1", 1, 30)
        assert await backend.update(lease, progress=100 / 15)
        await backend.close()

    asyncio.run(report_progress())
    for command in (("job", job_id), ("jobs",)):
        shown = cli(*command).stdout
        assert "6.7" in shown and "6.66" not in shown, shown


# -- errors users hit -------------------------------------------------------------------------
def test_an_app_module_that_fails_its_own_import_shows_the_users_traceback(cli: Cli) -> None:
    (cli.folder / "broken_app.py").write_text(
        "from workhorse import Workhorse\n\napp = Workhorse()\nimport notapackage\n"
    )
    broken = shell(cli, "status", app="broken_app:app")
    assert broken.returncode == 1
    assert "importing 'broken_app' failed inside the module" in broken.stderr
    assert 'broken_app.py", line 4' in broken.stderr
    assert "import notapackage" in broken.stderr
    assert "No module named 'notapackage'" in broken.stderr
    assert "PYTHONPATH" not in broken.stderr
    assert "frozen importlib" not in broken.stderr
    missing = shell(cli, "status", app="no_such_app:app")
    assert missing.returncode == 2
    assert "cannot import 'no_such_app'" in missing.stderr
    assert "PYTHONPATH" in missing.stderr


def test_unknown_task_lists_the_known_ones(cli: Cli) -> None:
    for command in ("run", "enqueue"):
        result = cli(command, "ad", "--data", "{}", ok=False)
        assert result.exit_code == 2
        assert "unknown task 'ad'" in result.output
        assert "known tasks: add, boom, slow" in result.output


@needs_sqlite
def test_bad_data_json_is_a_clear_usage_error(cli: Cli) -> None:
    result = cli("enqueue", "add", "--data", "{a: 1}", ok=False)
    assert result.exit_code == 2
    assert "Invalid value for --data: not valid JSON" in result.output
    assert cli.json("jobs") == []


@needs_sqlite
def test_a_payload_the_task_refuses_is_refused_at_enqueue(cli: Cli) -> None:
    result = cli("enqueue", "add", "--data", '{"a": "x", "b": 1}', ok=False)
    assert result.exit_code == 1
    assert "invalid payload for task 'add'" in result.output
    assert cli.json("jobs") == []


@needs_sqlite
def test_data_can_come_from_a_file(cli: Cli) -> None:
    (cli.folder / "pair.json").write_text('{"a": 40, "b": 2}')
    job_id = cli.enqueue("add", "@pair.json")
    assert cli.json("job", job_id)["data"] == {"a": 40, "b": 2}


def test_commands_that_need_tasks_say_how_to_name_the_app(cli: Cli) -> None:
    result = cli("enqueue", "add", "--data", "{}", app=False, ok=False)
    assert result.exit_code == 2
    assert "--app module:attr or set WORKHORSE_APP" in result.output
    wrong = cli("jobs", "--app", "no_such_module_here:app", app=False, ok=False)
    assert wrong.exit_code == 2
    assert "cannot import 'no_such_module_here'" in wrong.output
    attr = cli("enqueue", "add", "--app", f"{cli.module}:nope", app=False, ok=False)
    assert "Workhorse apps in it: app" in attr.output


@needs_sqlite
def test_app_comes_from_workhorse_app(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKHORSE_APP", cli.app)
    job_id = cli.enqueue("add", '{"a": 1, "b": 1}')  # --app is also given: same app
    result = CliRunner().invoke(
        main, ["enqueue", "add", "--data", '{"a": 0, "b": 0}', "--url", cli.url]
    )
    assert result.exit_code == 0, result.output
    assert len(cli.json("jobs")) == 2
    assert job_id


@needs_sqlite
def test_url_comes_from_workhorse_url(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKHORSE_URL", cli.url)
    cli.enqueue("add", '{"a": 1, "b": 1}')
    result = CliRunner().invoke(main, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["url"] == cli.url


@needs_sqlite
def test_run_without_a_worker_times_out_with_exit_3(cli: Cli) -> None:
    result = cli("run", "add", "--data", '{"a": 1, "b": 2}', "--timeout", "0.3", ok=False)
    assert result.exit_code == 3
    assert "did not finish within 0.3s" in result.output


@needs_sqlite
def test_run_without_a_worker_says_how_to_start_one(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "NO_WORKER_AFTER", 0.2, raising=False)
    result = cli("run", "add", "--data", '{"a": 1, "b": 2}', "--timeout", "1", ok=False)
    assert result.exit_code == 3
    assert "no live worker consumes queue 'default'" in result.output
    assert f"workhorse worker {cli.app} --queues default" in result.output


def _sigint_default() -> None:
    """In the child: SIGINT as a terminal's Ctrl+C finds it. A shell's background job (how a
    CI runner may start the tests) ignores SIGINT, children inherit that, and the child's
    asyncio then leaves it ignored: the test hung 20 s with SigIgn showing SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@needs_sqlite
@pytest.mark.slow
def test_ctrl_c_during_run_stops_waiting_and_names_the_job(cli: Cli) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workhorse",
            "run",
            "add",
            "--data",
            '{"a": 1, "b": 1}',
            "--app",
            cli.app,
            "--url",
            cli.url,
        ],
        cwd=cli.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's stack
        preexec_fn=_sigint_default,
    )
    with proc:
        deadline = time.monotonic() + 20
        while not (jobs := cli.json("jobs")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            with open(f"/proc/{proc.pid}/status") as f:  # is SIGINT ignored or caught?
                masks = [line for line in f if line.startswith(("SigIgn", "SigCgt", "SigBlk"))]
            proc.send_signal(signal.SIGABRT)
            stacks = proc.communicate()[1]
            pytest.fail(f"still waiting 20 s after Ctrl+C; {masks}; its stacks:\n{stacks}")
    assert proc.returncode == 130, err
    assert f"stopped waiting; job {jobs[0]['id']} may still run" in err
    assert out == ""
    assert cli.json("job", jobs[0]["id"])["state"] == "queued"  # the job itself stays


# -- with a real worker process -------------------------------------------------------------
@needs_sqlite
@pytest.mark.slow
def test_run_returns_the_result_from_a_worker_process(
    cli: Cli, worker: subprocess.Popen[bytes]
) -> None:
    result = cli("run", "add", "--data", '{"a": 20, "b": 22}', "--timeout", "20")
    assert orjson.loads(result.stdout) == 42

    progress = cli("run", "slow", "--data", "{}", "--timeout", "20")
    assert orjson.loads(progress.stdout) == "done"
    (job,) = cli.json("jobs", "--task", "slow")
    assert job["progress"] == 100

    status = cli.json("status")
    assert status["counts"]["default"]["completed"] == 2
    (live,) = status["workers"]
    assert live["pid"] == worker.pid


@needs_sqlite
@pytest.mark.slow
def test_a_failed_run_prints_the_remote_error_and_exits_1(
    cli: Cli, worker: subprocess.Popen[bytes]
) -> None:
    result = cli("run", "boom", "--data", '{"who": "ada"}', "--timeout", "20", ok=False)
    assert result.exit_code == 1
    assert result.stdout == ""  # nothing that looks like a result
    assert "KeyError: 'no such customer: ada'" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "in boom" in result.stderr
    (job,) = cli.json("jobs", "--state", "failed")
    assert job["error"]["type"] == "KeyError"
    detail = cli("job", job["id"]).stdout
    assert "KeyError: 'no such customer: ada'" in detail
    assert "Traceback (most recent call last)" in detail
    assert "1/1" in detail  # attempts


@needs_sqlite
@pytest.mark.slow
def test_worker_exits_0_on_sigterm_after_finishing_its_job(cli: Cli) -> None:
    proc = cli.worker("--queues", "default:2", "--concurrency", "3")
    try:
        deadline = time.monotonic() + 20
        while not cli.json("status")["workers"]:
            assert proc.poll() is None, stop(proc)
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.05)
        job_id = cli.enqueue("slow", "{}")
        while cli.json("job", job_id)["state"] != "active":
            assert time.monotonic() < deadline, "job did not start"
            time.sleep(0.02)
    finally:
        code, output = stop(proc)
    assert code == 0, output
    assert "stopped after" in output
    assert cli.json("job", job_id)["state"] == "completed"  # the grace period let it finish
    assert cli.json("status")["workers"] == []


@needs_sqlite
@pytest.mark.slow
def test_worker_burst_drains_the_queue_and_exits_0(cli: Cli) -> None:
    ids = [cli.enqueue("add", f'{{"a": {n}, "b": 1}}') for n in range(5)]
    proc = cli.worker("--burst")
    try:
        proc.wait(timeout=30)
    finally:
        code, output = stop(proc)
    assert code == 0, output
    assert [cli.json("job", i)["result"] for i in ids] == [1, 2, 3, 4, 5]


@needs_sqlite
@pytest.mark.slow
@pytest.mark.parametrize("chosen", ["uvloop", "auto", None, "asyncio"])
def test_worker_runs_on_uvloop_unless_turned_off(cli: Cli, chosen: str | None) -> None:
    pytest.importorskip("uvloop")  # a dependency, but not on Windows
    ids = [cli.enqueue("add", f'{{"a": {n}, "b": 1}}') for n in range(3)]
    env = {k: v for k, v in os.environ.items() if k != "WORKHORSE_EVENT_LOOP"}
    env["WORKHORSE_URL"] = cli.url
    if chosen is not None:  # None: the default
        env["WORKHORSE_EVENT_LOOP"] = chosen
    # The CLI looks uvloop.run up when it starts the worker: mark that it was used.
    code = (
        "import runpy, sys, uvloop\n"
        "real = uvloop.run\n"
        "def run(main, **kw):\n"
        "    print('worker on uvloop', flush=True)\n"
        "    return real(main, **kw)\n"
        "uvloop.run = run\n"
        f"sys.argv = ['workhorse', 'worker', {cli.app!r}, '--burst']\n"
        "runpy.run_module('workhorse', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cli.folder, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert ("worker on uvloop" in done.stdout.decode()) == (chosen != "asyncio")
    assert [cli.json("job", i)["result"] for i in ids] == [1, 2, 3]


def test_worker_on_auto_without_uvloop_runs_on_asyncio(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on Windows, where none is installed
    monkeypatch.delenv("WORKHORSE_EVENT_LOOP", raising=False)
    cli.enqueue("add", '{"a": 1, "b": 2}')
    result = cli("worker", cli.app, "--burst", app=False)
    assert result.exit_code == 0, result.output


def test_worker_on_uvloop_without_uvloop_says_how_to_fix_it(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import fails as if not installed
    monkeypatch.setenv("WORKHORSE_EVENT_LOOP", "uvloop")
    result = cli("worker", cli.app, "--burst", app=False, ok=False)
    assert result.exit_code == 1
    assert "uvloop is not installed: pip install uvloop" in result.output


def test_worker_with_a_bad_queue_spec_is_a_usage_error(cli: Cli) -> None:
    result = cli("worker", cli.app, "--queues", "default:0", app=False, ok=False)
    assert result.exit_code == 2
    assert "--queues" in result.output


def test_python_dash_m_workhorse_is_the_cli(cli: Cli) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workhorse", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for command in (
        "worker",
        "run",
        "enqueue",
        "jobs",
        "job",
        "status",
        "pause",
        "resume",
        "cancel",
        "retry",
        "purge",
        "demo",
    ):
        assert f"  {command} " in out


# -- the docs describe what the code has ------------------------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_md_lists_every_setting_as_the_cli_prints_it() -> None:
    from workhorse.cli.admin import settings_markdown

    text = (DOCS / "configuration.md").read_text()
    start = text.index("-->", text.index("<!-- settings:start")) + len("-->\n")
    end = text.index("<!-- settings:end -->")
    assert text[start:end].strip() == settings_markdown(), (
        "docs/configuration.md is out of date: paste `workhorse settings --markdown` "
        "between the settings markers"
    )


def test_tasks_md_documents_every_task_and_call_option() -> None:
    from workhorse.task import CALL_OPTIONS, TASK_OPTIONS

    text = (DOCS / "tasks.md").read_text()
    missing = [o for o in (*TASK_OPTIONS, *CALL_OPTIONS) if f"`{o}`" not in text]
    assert missing == [], f"docs/tasks.md does not document {missing}"


def test_cli_md_documents_every_command() -> None:
    text = (DOCS / "cli.md").read_text()
    missing = [c for c in sorted(main.commands) if f"`{c}`" not in text]
    assert missing == [], f"docs/cli.md does not document {missing}"


def test_readme_opens_with_the_two_commands_and_its_links_resolve() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert readme.removeprefix("# workhorse\n\n").startswith("```sh\nmake demo")
    assert "make test" in readme.split("```")[1]
    broken = []
    for page in [DOCS.parent / "README.md", *DOCS.glob("*.md")]:
        for link in re.findall(r"\]\(([^)#:]+\.md)", page.read_text()):
            if not (page.parent / link).exists():
                broken.append(f"{page.name} -> {link}")
    assert broken == []


def test_settings_shows_the_value_in_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKHORSE_LEASE", "12.5")
    result = CliRunner().invoke(main, ["settings", "--url", "memory://"])
    assert result.exit_code == 0, result.output
    lease = next(line for line in result.stdout.splitlines() if "WORKHORSE_LEASE" in line)
    assert "12.5" in lease
    assert "memory://" in result.stdout
    bad = CliRunner().invoke(main, ["settings"], env={"WORKHORSE_CONCURRENCY": "lots"})
    assert bad.exit_code == 1
    assert "concurrency" in bad.output
