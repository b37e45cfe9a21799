"""Fixtures of the real-process tests; each test file defines its own ``url``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.harness import Ledger, Workers


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def workers(url: str, ledger: Ledger, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(url, ledger, tmp_path)
    try:
        yield w
    finally:
        w.kill_all()
