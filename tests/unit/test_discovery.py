"""Discovery: one task per module, the module's handler, options as module-level names."""

import textwrap
from pathlib import Path

import pytest

from workhorse import ConfigError, Workhorse


def write(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(body))


def test_discover_folder(tmp_path: Path) -> None:
    jobs = tmp_path / "worker_jobs"
    write(
        jobs,
        "send_welcome.py",
        """
        queue = "priority"
        retries = 3
        timeout = 10

        async def handler(data, ctx):
            return {"ok": True}
    """,
    )
    write(
        jobs,
        "cleanup.py",
        """
        def handler():
            return 1
    """,
    )
    write(jobs, "_helpers.py", "X = 1\n")
    app = Workhorse("memory://")
    found = app.discover(jobs)
    assert sorted(t.name for t in found) == ["cleanup", "send_welcome"]
    t = app.get_task("send_welcome")
    assert (t.defaults.queue, t.defaults.retries, t.defaults.timeout) == ("priority", 3, 10)
    assert not app.get_task("cleanup").is_async


def test_discover_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "myjobs_pkg"
    write(pkg, "__init__.py", "")
    write(pkg, "resize.py", "name = 'resize_image'\nasync def handler(data):\n    return data\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Workhorse("memory://")
    app.discover("myjobs_pkg")
    assert "resize_image" in app.tasks


def test_module_without_handler_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "jobs", "oops.py", "def run():\n    pass\n")
    with pytest.raises(ConfigError, match="no handler"):
        Workhorse("memory://").discover(tmp_path / "jobs")


def test_bad_module_option_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "jobs", "bad.py", "retries = 'many'\ndef handler():\n    pass\n")
    with pytest.raises(ConfigError, match="retries"):
        Workhorse("memory://").discover(tmp_path / "jobs")


def test_every_task_option_is_read_from_a_job_file(tmp_path: Path) -> None:
    write(
        tmp_path / "jobs",
        "resize.py",
        """
        queue = "priority"
        retries = 2
        backoff = 1.5
        timeout = 30
        priority = 3
        lease = 20
        singleton = True
        on_duplicate = "skip"
        concurrency = 2
        rate = "10/s"
        runtime = "process"
        memory_limit = 1 << 30
        keep_for = 60

        def key(data):
            return data["user"]

        def handler(data):
            return data
    """,
    )
    app = Workhorse("memory://")
    (task,) = app.discover(tmp_path / "jobs")
    d = task.defaults
    assert (d.queue, d.retries, d.timeout, d.priority, d.lease) == ("priority", 2, 30, 3, 20)
    assert (d.singleton, d.on_duplicate, d.concurrency, d.runtime) == (True, "skip", 2, "process")
    assert (d.memory_limit, d.keep_for, d.rate is not None, d.key is not None) == (
        1 << 30,
        60,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("worker = 'priority'", "'worker'.*use queue"),
        ("def default(data):\n    return data", "'default'.*use handler"),
        ("config = {'concurrency': 10}", "'config'.*module-level option names"),
        ("attempts = 3", "'attempts'.*use retries"),
        ("concurency = 2", "'concurency'; did you mean 'concurrency'"),
        ("queues = 'priority'", "did you mean 'queue'"),
    ],
)
def test_a_name_another_format_uses_is_refused_with_ours(
    tmp_path: Path, line: str, says: str
) -> None:
    """A seed's name (startupjs `worker`, `export default`) or a misspelled option would
    leave the job on the wrong queue or unlimited: refused, naming the option to use."""
    write(tmp_path / "jobs", "send.py", f"{line}\n\ndef handler(data):\n    return data\n")
    with pytest.raises(ConfigError, match=says):
        Workhorse("memory://").discover(tmp_path / "jobs")


def test_helper_names_are_left_alone(tmp_path: Path) -> None:
    write(
        tmp_path / "jobs",
        "report.py",
        """
        import json

        default = {"size": 10}
        worker_count = 3
        keys = ["a", "b"]
        _queues = ["x"]

        def handler(data):
            return json.dumps(default)
    """,
    )
    assert [t.name for t in Workhorse("memory://").discover(tmp_path / "jobs")] == ["report"]
