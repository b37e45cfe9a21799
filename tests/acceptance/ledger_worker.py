"""A real worker process for the acceptance tests.

    python ledger_worker.py URL LEDGER '{"lease": 1, "concurrency": 4, ...}'

Its tasks (``mark`` and the others below) append ``start`` and ``done`` lines to the ledger
file: each line is one ``write`` to a file opened with O_APPEND, so lines from several
processes never mix.
The tests judge delivery from this ledger, not from the store. The process writes a
``ready`` line when its backend is open, runs until SIGTERM/SIGINT, and exits 0.

Line format: ``EVENT JOB_ID PID EPOCH_SECONDS`` (``ready - PID EPOCH_SECONDS``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

import orjson

from workhorse import JobContext, Workhorse

TASK = "mark"


def ledger_line(fd: int, event: str, job_id: str) -> None:
    os.write(fd, f"{event} {job_id} {os.getpid()} {time.time():.6f}\n".encode())


def build(url: str, ledger: str, settings: dict[str, Any]) -> Workhorse:
    app = Workhorse(url, **settings)
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @app.task(name=TASK)
    async def mark(data: dict[str, Any], ctx: JobContext) -> str:
        ledger_line(fd, "start", ctx.job_id)
        if data.get("sleep"):
            await asyncio.sleep(float(data["sleep"]))
        ledger_line(fd, "done", ctx.job_id)
        return ctx.job_id

    @app.task(name="block")
    def block(data: dict[str, Any], ctx: JobContext) -> str:
        # Blocking code in a thread: a timeout or a shutdown cannot interrupt it.
        ledger_line(fd, "start", ctx.job_id)
        time.sleep(float(data.get("sleep", 0)))
        ledger_line(fd, "done", ctx.job_id)
        return ctx.job_id

    @app.task(name="hog", concurrency=1)
    async def hog(data: dict[str, Any], ctx: JobContext) -> None:
        # Blocks its worker's event loop (time.sleep in an async def) for data["block"] s.
        ledger_line(fd, "start", ctx.job_id)
        time.sleep(float(data["block"]))  # noqa: ASYNC251
        ledger_line(fd, "done", ctx.job_id)

    @app.task(name="hang", retries=3)
    async def hang(data: dict[str, Any], ctx: JobContext) -> None:
        # Its first run blocks its worker's event loop for good; later runs complete.
        ledger_line(fd, "start", ctx.job_id)
        try:
            os.close(os.open(data["flag"], os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            ledger_line(fd, "done", ctx.job_id)
            return
        while True:
            time.sleep(0.05)  # noqa: ASYNC251

    @app.task(name="crash")
    async def crash(data: dict[str, Any], ctx: JobContext) -> None:
        # A job that kills its worker process every time it runs.
        ledger_line(fd, "start", ctx.job_id)
        os.kill(os.getpid(), signal.SIGKILL)

    app.ledger_fd = fd  # type: ignore[attr-defined]
    return app


async def main(url: str, ledger: str, options: dict[str, Any]) -> None:
    worker_options = {
        k: options.pop(k)
        for k in list(options)
        if k
        in (
            "queues",
            "concurrency",
            "lease",
            "poll_interval",
            "shutdown_grace",
            "reclaim_interval",
            "heartbeat_interval",
        )
    }
    app = build(url, ledger, options)
    worker = app.worker(**worker_options)
    worker.install_signal_handlers()
    await app.open()
    ledger_line(app.ledger_fd, "ready", "-")  # type: ignore[attr-defined]
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
