"""The app of the store-outage shutdown test, run by ``workhorse worker``: every option
at its default. Its task writes ``start`` to the ledger named by OUTAGE_LEDGER, then
sleeps for ``data["sleep"]`` seconds."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tests.acceptance.ledger_worker import ledger_line
from workhorse import JobContext, Workhorse

app = Workhorse(os.environ.get("WORKHORSE_URL", "memory://"))
_fd = os.open(os.environ.get("OUTAGE_LEDGER", os.devnull), os.O_WRONLY | os.O_APPEND)


@app.task(name="nap")
async def nap(data: dict[str, Any], ctx: JobContext) -> str:
    ledger_line(_fd, "start", ctx.job_id)
    await asyncio.sleep(float(data["sleep"]))
    return ctx.job_id
