"""The docs' examples run as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
