"""A chaos worker process: ``python -m tests.chaos.worker URL LEDGER OPTIONS_JSON``.

Writes a ``ready`` row once its store is open, then runs until SIGTERM/SIGINT (or a
SIGKILL from the harness)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import orjson

from tests.chaos.tasks import WORKER_OPTIONS, build


async def main(url: str, ledger: str, options: dict[str, Any]) -> None:
    worker_options = {k: options.pop(k) for k in list(options) if k in WORKER_OPTIONS}
    app = build(url, ledger, **options)
    worker = app.worker(**worker_options)
    worker.install_signal_handlers()
    await app.open()
    app.ledger.write("-", "ready")  # type: ignore[attr-defined]
    try:
        await worker.run()
    finally:
        await app.close()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(main(sys.argv[1], sys.argv[2], orjson.loads(sys.argv[3])))
