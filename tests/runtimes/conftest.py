"""Runtime tests run real child processes against a real SQLite file; ``other`` is a
second app on the same file, standing in for another process (a producer, the CLI)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from workhorse import Workhorse

PROGRAMS = Path(__file__).with_name("programs")
NODE = "/usr/bin/node" if os.path.exists("/usr/bin/node") else "node"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
async def app(url: str) -> AsyncIterator[Workhorse]:
    a = Workhorse(url, poll_interval=0.05, process_pool=1)
    await a.open()
    yield a
    await a.close()


@pytest.fixture
async def other(url: str) -> AsyncIterator[Workhorse]:
    a = Workhorse(url, poll_interval=0.05)
    await a.open()
    yield a
    await a.close()


def gone(pid: int) -> bool:
    """True once no process has this pid, not even a zombie waiting to be reaped."""
    return not os.path.exists(f"/proc/{pid}")
