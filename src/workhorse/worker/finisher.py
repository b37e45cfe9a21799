"""Group commit for outcomes: finishes that arrive while one batch is being written go
together in the next, so a busy worker writes one batch per round trip, not one per job."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import orjson

from workhorse.backends import Backend
from workhorse.job import REENQUEUE_DELAY, Lease, Outcome

log = logging.getLogger("workhorse.worker")

_Item = tuple[Lease, Outcome, "asyncio.Future[bool]"]

# Seconds a batch waits for its flow steps' events before the other outcomes go without
# those steps' (see ``Finisher._events_stored``).
_EVENTS_WAIT = 1.0


class Finisher:
    def __init__(self, backend: Backend, max_batch: int = 500) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._pending: list[_Item] = []
        self._flusher: asyncio.Task[None] | None = None
        self._steps = False  # an outcome waiting for its flow events was submitted

    def submit(self, lease: Lease, outcome: Outcome) -> asyncio.Future[bool]:
        """Queue the outcome for the next batch; the future tells whether the store took
        it (False: the lease was lost, or the outcome was given up at shutdown). The
        flusher is scheduled before anything the caller wakes after this (the worker's
        next claim), so on a shared connection the finish goes out first."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((lease, outcome, fut))
        if outcome.after is not None:
            self._steps = True
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="workhorse-finisher")
        # No shield: a cancelled caller's item stays in _pending and is written anyway (the
        # flusher skips futures that are done), and a shield costs per job (profiles.md).
        return fut

    async def _flush(self) -> None:
        delay = 0.05
        failures = 0
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                # A worker that never ran a flow step looks at no outcome's events.
                if self._steps and any(
                    o.after is not None and not o.after.done() for _, o, _ in batch
                ):
                    batch = await self._events_stored(batch)
                    if not batch:
                        continue
                try:
                    accepted = await self.backend.finish([(lease, out) for lease, out, _ in batch])
                except Exception:
                    if _repair([out for _, out, _ in batch]):
                        continue  # a value the store cannot encode, now made safe
                    failures += 1
                    # A second failure in a row: write the items one by one, so that one
                    # the store rejects cannot hold back the others.
                    if failures > 1 and await self._isolate(batch):
                        failures = 0
                        continue
                    # Keep the outcomes and try again: while the lease lasts the result can
                    # still land; after that the job is reclaimed and runs again.
                    log.exception(
                        "writing %d outcome(s) failed; retrying in %.2fs", len(batch), delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.05
                failures = 0
                if self._pending[len(batch) - 1] is batch[-1]:  # the first ones, as a rule
                    del self._pending[: len(batch)]
                else:
                    gone = {id(item) for item in batch}
                    self._pending = [item for item in self._pending if id(item) not in gone]
                for (_, _, fut), ok in zip(batch, accepted, strict=True):
                    if not fut.done():  # _settle inline: a call per job less
                        fut.set_result(ok)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None

    async def _events_stored(self, batch: list[_Item]) -> list[_Item]:
        """The batch's items whose flow events are stored (``Outcome.after``): one wait
        for the whole batch, not one per step. An outcome whose events are not stored
        within a second waits for a later batch, so events the store refuses hold back
        their own steps' outcomes, not the others'. ``wait`` cancels none of them."""
        waiting = {o.after for _, o, _ in batch if o.after is not None and not o.after.done()}
        await asyncio.wait(waiting, timeout=_EVENTS_WAIT)
        return [item for item in batch if item[1].after is None or item[1].after.done()]

    async def _isolate(self, batch: list[_Item]) -> bool:
        """Write the batch's items one at a time. An item the store rejects for itself
        (not a lost connection) while it still answers ends failed with the store's
        reason. False if the store takes no write: every item left waits for it."""
        for item in batch:
            lease, outcome, fut = item
            try:
                ok = (await self.backend.finish([(lease, outcome)]))[0]
            except Exception as exc:
                if _transient(exc) or not await self._answers(lease):
                    return False
                written = await self._refuse(lease, outcome, exc)
                if written is None:
                    return False
                ok = written
            self._pending.remove(item)
            _settle(fut, ok)
        return True

    async def _answers(self, lease: Lease) -> bool:
        """Whether the store serves a read of the job, so a failed write is about the item."""
        try:
            await self.backend.get(lease.job_id)
        except Exception:
            return False
        return True

    async def _refuse(self, lease: Lease, outcome: Outcome, exc: Exception) -> bool | None:
        """Write a failed outcome that names the store's reason instead, and make it the
        item's outcome (so the worker reports what was written). None if the store
        rejects that too: it takes no write now, and the original is kept."""
        if outcome.followups:
            return await self._rerun(lease, outcome, exc)
        message = f"the store rejected the job's {outcome.kind!r} outcome: {exc}"
        if outcome.error is not None:
            # Its own error, escaped (repr), since that may be what the store rejected.
            was = f"{outcome.error.get('type')}: {outcome.error.get('message')}"
            message += f"; the job's own error was {was[:2000]!r}"
        error = {"type": type(exc).__name__, "message": message, "traceback": ""}
        # A flow step's events go with it, as they would have gone before its outcome.
        failed = Outcome(
            "failed",
            error=error,
            logs=_json_safe(outcome.logs),
            logs_dropped=outcome.logs_dropped,
            events=outcome.events,
        )
        ok = await self._try(lease, failed)
        if ok is None and failed.logs:
            failed.logs = []  # they may hold what the store rejected
            ok = await self._try(lease, failed)
        if ok is None and failed.events:
            failed.events = ()  # so may a flow step's events, the last thing left to drop
            ok = await self._try(lease, failed)
        if ok is None:
            return None
        log.error(
            "job %s: the store rejected its %r outcome (%s: %s); recorded it as failed",
            lease.job_id,
            outcome.kind,
            type(exc).__name__,
            exc,
        )
        outcome.kind, outcome.result, outcome.error = "failed", None, failed.error
        outcome.delay, outcome.refund, outcome.logs = 0.0, False, failed.logs
        return ok

    async def _rerun(self, lease: Lease, outcome: Outcome, exc: Exception) -> bool | None:
        """A completed flow step whose finish (with its follow-ups) the store rejects:
        written again without its log lines, counted as dropped (the one part of a
        completed outcome a store may reject), else run again, its attempt refunded, as
        one whose follow-ups could not be built: written alone, its completion would
        start nothing. None if the store rejects that too."""
        if outcome.logs:
            bare = dataclasses.replace(
                outcome, logs=[], logs_dropped=outcome.logs_dropped + len(outcome.logs), call=None
            )
            ok = await self._try(lease, bare)
            if ok is not None:
                log.error(
                    "job %s: the store rejected its log lines (%s: %s); dropped them",
                    lease.job_id,
                    type(exc).__name__,
                    exc,
                )
                outcome.logs, outcome.logs_dropped = bare.logs, bare.logs_dropped
                outcome.followups_claimed = bare.followups_claimed
                return ok
        error = {
            "type": type(exc).__name__,
            "message": f"the store rejected the step's follow-ups: {exc}",
            "traceback": "",
        }
        again = Outcome(
            "retry",
            error=error,
            delay=REENQUEUE_DELAY,
            refund=True,
            logs_dropped=outcome.logs_dropped + len(outcome.logs),
            events=outcome.events,
        )
        ok = await self._try(lease, again)
        if ok is None:
            return None
        log.error("job %s: %s; it runs again", lease.job_id, error["message"])
        outcome.kind, outcome.result, outcome.error, outcome.followups = "retry", None, error, ()
        outcome.delay, outcome.refund = REENQUEUE_DELAY, True
        outcome.logs, outcome.logs_dropped = [], again.logs_dropped
        return ok

    async def _try(self, lease: Lease, outcome: Outcome) -> bool | None:
        try:
            return (await self.backend.finish([(lease, outcome)]))[0]
        except Exception:
            log.exception("job %s: writing its outcome as failed failed too", lease.job_id)
            return None

    async def drain(self, timeout: float | None = None) -> int:
        """Wait until every outcome is written, at most ``timeout`` seconds. Returns how
        many were left unwritten and given up (their jobs come back when their leases
        expire)."""
        try:
            async with asyncio.timeout(timeout):
                while self._flusher is not None:
                    await asyncio.shield(self._flusher)
        except TimeoutError:
            return self.abandon()
        return 0

    def abandon(self) -> int:
        """Stop writing: the pending outcomes are dropped (their futures get False)."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        left, self._pending = self._pending, []
        for _, _, fut in left:
            _settle(fut, False)
        return len(left)


# Errors that say the store or the way to it failed, not the item: a lost connection,
# a timeout, a store busy or read-only for now (by class name, across the client libraries).
_TRANSIENT = frozenset(
    {
        "OperationalError",
        "ConnectionError",
        "TimeoutError",
        "BusyLoadingError",
        "ReadOnlyError",
        "ClusterDownError",
        "TryAgainError",
        "MasterDownError",
    }
)


def _transient(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # a chain can loop back on itself
        if seen is None:
            break
        if isinstance(seen, OSError | TimeoutError) or any(
            cls.__name__ in _TRANSIENT for cls in type(seen).__mro__
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _settle(fut: asyncio.Future[bool], ok: bool) -> None:
    if not fut.done():
        fut.set_result(ok)


def _encodes(value: Any) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return False
    return True


def _json_safe(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS))


def _repair(outcomes: list[Outcome]) -> bool:
    """Make log lines, errors and flow events the store cannot encode JSON-safe (odd values
    become their repr), so that one of them cannot hold back every outcome in the batch
    forever. Runs only after a failed write, never on the hot path. True if anything was
    repaired."""
    repaired = False
    for out in outcomes:
        if out.logs and not _encodes(out.logs):
            out.logs = _json_safe(out.logs)
            repaired = True
        if out.error is not None and not _encodes(out.error):
            out.error = _json_safe(out.error)
            repaired = True
        if out.events and not _encodes([e.data for e in out.events]):
            out.events = [dataclasses.replace(e, data=_json_safe(e.data)) for e in out.events]
            repaired = True
    if repaired:
        log.warning("some log lines held values that are not JSON; stored their repr instead")
    return repaired
