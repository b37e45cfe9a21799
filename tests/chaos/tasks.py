"""The tasks the chaos workers run. Each writes its own ledger rows; the producer side
builds the same app (without a ledger) so that it can enqueue by name."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.chaos.ledger import Writer
from workhorse import JobContext, Workhorse

WORKER_OPTIONS = (
    "queues",
    "concurrency",
    "lease",
    "poll_interval",
    "shutdown_grace",
    "reclaim_interval",
    "heartbeat_interval",
)


def build(url: str, ledger: str | None, **settings: Any) -> Workhorse:
    app = Workhorse(url, **settings)
    writer = Writer(ledger) if ledger is not None else None

    def mark(ctx: JobContext, event: str) -> None:
        if writer is not None:
            writer.write(ctx.job_id, event, ctx.attempt)

    @app.task(name="work", retries=20)
    async def work(data: dict[str, Any], ctx: JobContext) -> dict[str, int]:
        """A job with a side effect: start, some work, the effect, the finish."""
        mark(ctx, "start")
        if data.get("sleep"):
            await asyncio.sleep(float(data["sleep"]))
        mark(ctx, "effect")
        mark(ctx, "finish")
        return {"pid": writer.pid if writer else 0, "attempt": ctx.attempt}

    @app.task(name="block", retries=20)
    async def block(data: dict[str, Any], ctx: JobContext) -> dict[str, int]:
        """A bad async handler: blocks its event loop (no await) for ``block`` seconds."""
        mark(ctx, "start")
        time.sleep(float(data["block"]))  # noqa: ASYNC251 - the fault under test
        mark(ctx, "effect")
        mark(ctx, "finish")
        return {"pid": writer.pid if writer else 0, "attempt": ctx.attempt}

    app.ledger = writer  # type: ignore[attr-defined]
    return app
