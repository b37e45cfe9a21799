from __future__ import annotations

import pytest

from workhorse import Workhorse


@pytest.fixture
def workhorse_app() -> Workhorse:
    """The app workhorse's pytest plugin puts on a memory store for each test."""
    from jobs import SENT, app

    SENT.clear()
    return app
