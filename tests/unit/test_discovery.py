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
