"""The benchmark's app: the same two tasks in the measuring process and in worker children."""

from __future__ import annotations

import asyncio
from typing import Any

from workhorse import Workhorse

QUEUE = "default"
NOOP = "noop"
SLEEP = "sleep10"


async def noop() -> None:
    return None


async def sleep10() -> None:
    await asyncio.sleep(0.01)


def make_app(url: str, **settings: Any) -> Workhorse:
    """A fresh app on ``url`` with the two benchmark tasks; settings stay at their
    defaults unless given, so the figures are what a user gets out of the box."""
    app = Workhorse(url, **settings)
    app.add_task(noop, name=NOOP, queue=QUEUE)
    app.add_task(sleep10, name=SLEEP, queue=QUEUE)
    return app
