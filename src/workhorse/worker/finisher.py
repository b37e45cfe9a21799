"""Group commit for outcomes: finishes that arrive while one batch is being written go
together in the next, so a busy worker writes one batch per round trip, not one per job."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from workhorse.backends import Backend
from workhorse.job import Lease, Outcome

log = logging.getLogger("workhorse.worker")


class Finisher:
    def __init__(self, backend: Backend, max_batch: int = 500) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._pending: list[tuple[Lease, Outcome, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, lease: Lease, outcome: Outcome) -> asyncio.Future[bool]:
        """Queue the outcome for the next batch; the future tells whether the store took
        it (False: the lease was lost). The flusher is scheduled before anything the caller
        wakes after this (the worker's next claim), so on a shared connection the finish
        goes out first."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((lease, outcome, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="workhorse-finisher")
        # No shield needed: a cancelled caller's item stays in _pending and is written
        # anyway (the flusher skips futures that are done); shielding cost ~18% per job.
        return fut

    async def _flush(self) -> None:
        delay = 0.05
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                try:
                    accepted = await self.backend.finish([(lease, out) for lease, out, _ in batch])
                except Exception:
                    if _repair([out for _, out, _ in batch]):
                        continue  # a value the store cannot encode, now made safe
                    # Keep the outcomes and try again: while the lease lasts the result can
                    # still land; after that the job is reclaimed and runs again.
                    log.exception(
                        "writing %d outcome(s) failed; retrying in %.2fs", len(batch), delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.05
                del self._pending[: len(batch)]
                for (_, _, fut), ok in zip(batch, accepted, strict=True):
                    if not fut.done():
                        fut.set_result(ok)
        finally:
            self._flusher = None

    async def drain(self) -> None:
        while self._flusher is not None:
            await asyncio.shield(self._flusher)


def _encodes(value: Any) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return False
    return True


def _json_safe(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS))


def _repair(outcomes: list[Outcome]) -> bool:
    """Make log lines and errors the store cannot encode JSON-safe (odd values become their
    repr), so that one of them cannot hold back every outcome in the batch forever. Runs
    only after a failed write, never on the hot path. True if anything was repaired."""
    repaired = False
    for out in outcomes:
        if out.logs and not _encodes(out.logs):
            out.logs = _json_safe(out.logs)
            repaired = True
        if out.error is not None and not _encodes(out.error):
            out.error = _json_safe(out.error)
            repaired = True
    if repaired:
        log.warning("some log lines held values that are not JSON; stored their repr instead")
    return repaired
