"""The docs' examples run as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)


def test_quickstart_test_example_passes_with_the_setup_it_names(tmp_path: Path) -> None:
    """The jobs module and the test from the quickstart, in a project of their own, run
    by pytest with only the pytest-asyncio set-up the page tells the reader to add."""
    blocks = python_blocks("quickstart.md")
    jobs = next(b for b in blocks if b.startswith("import asyncio") and "app = Workhorse(" in b)
    test = next(b for b in blocks if "async def test_" in b)
    (tmp_path / "myproject").mkdir()
    (tmp_path / "myproject" / "__init__.py").write_text("")
    (tmp_path / "myproject" / "jobs.py").write_text(jobs)
    (tmp_path / "test_jobs.py").write_text(test)
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nasyncio_mode = "auto"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKHORSE_", "PYTEST_"))}
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_jobs.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout


def _valid_options(url: str) -> set[str]:
    """The options a backend's parser takes, as its refusal of an unknown one lists them."""
    import pytest

    from workhorse.backends import backend_from_url
    from workhorse.errors import ConfigError

    with pytest.raises(ConfigError, match="valid:") as caught:
        backend_from_url(url + "?no_such_option=1")
    listed = str(caught.value).split("valid:", 1)[1]
    own = re.split(r"\(| and ", listed)[0]  # PostgreSQL goes on about libpq's parameters
    return set(re.findall(r"[a-z_]+", own))


def _table_options(text: str, heading: str) -> set[str]:
    """The first column of the option table that follows ``heading``."""
    rows = text.split(heading, 1)[1].split("\n\n", 2)[1]
    return set(re.findall(r"^\| `([a-z_]+)` \|", rows, re.M))


def test_configuration_md_documents_each_url_option_the_parsers_take() -> None:
    text = (DOCS / "configuration.md").read_text()
    sqlite = _table_options(text, "SQLite URLs take options")
    assert sqlite == _valid_options(f"sqlite:///{DOCS}/never.db")
    redis = _table_options(text, "Redis URLs take these options")
    assert redis == _valid_options("rediss://127.0.0.1:1/0")
    postgres_row = next(line for line in text.splitlines() if line.startswith("| `postgresql://"))
    documented = set(re.findall(r"`([a-z_]+)[=`]", postgres_row))
    assert _valid_options("postgresql://u@127.0.0.1:1/db") <= documented


async def test_flows_md_example_runs_as_printed(monkeypatch: Any, tmp_path: Path) -> None:
    """The onboarding flow of docs/flows.md: the fan-out, the join and the run's state."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(python_blocks("flows.md")[0], namespace)
    app = namespace["app"]
    app.configure(url="memory://")
    async with app:
        await app.start_worker(concurrency=4)
        run = await app.flows.start("onboarding", {"email": "a@b.c"})
        assert await run.result(timeout=10) == {
            "activate": {"user": 7, "done": ["step:send_welcome", "step:setup_billing"]}
        }
        await app.stop_workers()
