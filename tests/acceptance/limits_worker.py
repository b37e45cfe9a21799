"""A real worker process for the schedule, singleton and limit acceptance tests.

    python limits_worker.py URL LEDGER '{"lease": 2, "concurrency": 8, ...}'

Every task appends one line per event to the ledger (one ``write`` on an O_APPEND file, so
lines of several processes never mix); the tests count from this ledger, never from the
store. Line format: ``EVENT JOB_ID PID EPOCH_SECONDS [ARG]``:

- ``feed``  a run of the keyed singleton ``rebuild_user_feed``
- ``start`` / ``done``  a run of ``charge`` (concurrency 1 per account); ARG the account
- ``ping``  a run of ``ping`` (rate limited)
- ``ready`` the process has opened its store (JOB_ID is ``-``)

The producer in the test registers the same tasks with :func:`register` (a singleton's key
is computed where the job is enqueued), with handlers that never run there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import orjson

from workhorse import JobContext, Workhorse

RATE = "50/s"


def line(fd: int, event: str, job_id: str, arg: str = "") -> None:
    os.write(
        fd, f"{event} {job_id} {os.getpid()} {time.time():.6f} {arg}".rstrip().encode() + b"\n"
    )


def register(app: Workhorse, fd: int | None) -> None:
    """The tasks of these tests. ``fd`` None: a producer, whose handlers never run."""

    def ledger(event: str, job_id: str, arg: str = "") -> None:
        if fd is None:
            raise AssertionError("a producer never runs jobs")
        line(fd, event, job_id, arg)

    @app.task(name="rebuild_user_feed", singleton=lambda d: {"user_id": d["user_id"]})
    async def rebuild_user_feed(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        ledger("feed", ctx.job_id)
        await asyncio.sleep(float(data.get("sleep", 0)))
        return {"job": ctx.job_id, "user_id": data["user_id"]}

    @app.task(name="charge", concurrency=1, key=lambda d: d["account"])
    async def charge(data: dict[str, Any], ctx: JobContext) -> None:
        ledger("start", ctx.job_id, data["account"])
        await asyncio.sleep(float(data.get("sleep", 0)))
        ledger("done", ctx.job_id, data["account"])

    @app.task(name="ping", rate=RATE)
    async def ping(ctx: JobContext) -> None:
        ledger("ping", ctx.job_id)


WORKER_OPTIONS = (
    "queues",
    "concurrency",
    "lease",
    "poll_interval",
    "shutdown_grace",
    "reclaim_interval",
    "heartbeat_interval",
)


async def main(url: str, ledger_path: str, options: dict[str, Any]) -> None:
    worker_options = {k: options.pop(k) for k in list(options) if k in WORKER_OPTIONS}
    app = Workhorse(url, **options)
    fd = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    register(app, fd)
    worker = app.worker(**worker_options)
    worker.install_signal_handlers()
    await app.open()
    line(fd, "ready", "-")
    try:
        await worker.run()
    finally:
        await app.close()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(main(sys.argv[1], sys.argv[2], orjson.loads(sys.argv[3])))
