"""Lease renewal off the worker's loop: the renewal thread, the URL of its own backend,
and the record of a running job that it reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from workhorse.backends import Backend, RenewResult, backend_from_url
from workhorse.context import JobContext
from workhorse.job import Lease
from workhorse.urls import redact

if TYPE_CHECKING:
    from workhorse.client import Client

log = logging.getLogger("workhorse.worker")

# The renewal thread stops renewing a job's lease (and limit slot) once the worker's loop
# has been silent for this many of its leases: a handler that blocks the loop for a while
# keeps its job, one blocked for good lets another worker take the job over.
SILENT_LEASES = 3


@dataclass(slots=True)
class Running:
    """A job the worker runs: its lease, its context and the asyncio task of its attempt."""

    lease: Lease
    ctx: JobContext
    task: asyncio.Task[None] | None = None
    lost: bool = False  # the store gave the lease away: stop renewing, the finish is refused
    finishing: bool = False  # the outcome is with the finisher: nothing left to renew
    started: float = 0.0  # time.monotonic() of its claim, then of its handler's start
    ran: float = 0.0  # seconds its handler took (the auto prefetch's run-time mean)


class Renewing(Protocol):
    """What the renewal thread reads of the worker (and hands results back to)."""

    lease: float
    pulse_at: float  # when the worker's loop last showed it runs (time.monotonic())

    def live_jobs(self) -> list[Running]: ...

    @staticmethod
    def renew_period(spans: Sequence[float]) -> float: ...

    async def renew_leases(self, backend: Backend, live: Sequence[Running]) -> RenewResult: ...

    def apply_renewal(self, live: Sequence[Running], result: RenewResult) -> None: ...

    def blocker(self, live: Sequence[Running]) -> str: ...


def renewal_url(client: Client) -> str | None:
    """The URL for the renewal thread's own backend, or None to renew on the loop.

    Only durable stores, and only when the app's URL setting names this very store: a
    backend passed in as an object may carry what a URL cannot (a test's fake clock), and
    its ``url`` hides its password."""
    backend = client.backend
    if not backend.capabilities.multi_process:
        return None  # memory:// lives in one loop
    url = client.settings.url
    if url != backend.url and redact(url) != backend.url:
        return None
    if url.split("://", 1)[0].lower() in ("postgresql", "postgres"):
        # Renewal needs one connection, not the pool's default two.
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.setdefault("pool_min", "1")
        query.setdefault("pool_max", "1")
        url = urlunsplit(parts._replace(query=urlencode(query)))
    return url


class RenewThread:
    """Renews leases and limit slots from a thread with its own event loop and its own
    backend object on the same store (used only for renewal), so that a handler blocking
    the worker's loop (``time.sleep`` or CPU work in an ``async def``) cannot starve
    renewal and have its job run twice. It reads a snapshot of the worker's running jobs
    and hands each result that matters back to the worker's loop. No per-job cost: one
    renew per period. It renews only while the loop pulses: a loop blocked for good must
    not hold its jobs forever."""

    def __init__(self, url: str, worker: Renewing, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self._worker = worker
        self._main_loop = loop
        self.ready = False  # its backend is open; until then the worker's loop renews
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop = threading.Event()
        self._silent = False  # the loop's silence was reported; cleared when it pulses again
        self._round_at = time.monotonic()  # when this thread last looked at the loop
        self._thread = threading.Thread(target=self._main, name="workhorse-renew", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop just closed
                loop.call_soon_threadsafe(wake.set)

    async def stop(self) -> None:
        self._stop.set()
        self.wake()
        await asyncio.to_thread(self._thread.join, 10)
        if self._thread.is_alive():
            log.error("the lease renewal thread did not stop; leaving it")

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception:
            log.exception("the lease renewal thread failed; renewing on the worker's loop")
        finally:
            self.ready = False

    def _snapshot(self) -> list[Running]:
        while True:
            try:
                return self._worker.live_jobs()
            except RuntimeError:  # the dict changed size during the copy: copy again
                continue

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        backend = await self._open()
        if backend is None:
            return
        apply: Callable[[Sequence[Running], RenewResult], None] = self._worker.apply_renewal
        try:
            self.ready = True
            while not self._stop.is_set():
                live = self._snapshot()
                period = self._worker.renew_period(
                    [r.lease.lease for r in live] or [self._worker.lease]
                )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(period):
                        await self._wake.wait()
                    continue  # woken: a shorter lease started, or stop
                live = self._heard(self._snapshot())
                if not live:
                    continue
                try:
                    result = await self._worker.renew_leases(backend, live)
                except Exception:
                    log.exception("lease renewal failed; retrying")
                    continue
                if result.lost or result.cancel:
                    try:
                        self._main_loop.call_soon_threadsafe(apply, live, result)
                    except RuntimeError:  # the worker's loop is closed: nobody to tell
                        return
        finally:
            self.ready = False
            await backend.close()

    def _heard(self, live: list[Running]) -> list[Running]:
        """The jobs whose leases may still be renewed: all of them while the worker's loop
        pulses, none whose lease it has been silent for SILENT_LEASES times."""
        now = time.monotonic()
        silence = now - self._worker.pulse_at
        gap, self._round_at = now - self._round_at, now
        kept = [r for r in live if silence < SILENT_LEASES * r.lease.lease]
        if len(kept) == len(live) or gap > silence / 2:
            # A gap as long as the silence: the whole process was held (SIGSTOP, a VM
            # pause), this thread too, so the loop has had no chance to pulse yet.
            if self._silent and len(kept) == len(live):
                self._silent = False
                log.warning("the event loop runs again; renewing its jobs' leases again")
            return live
        if not self._silent:
            self._silent = True
            log.error(
                "the event loop has been blocked for %.1fs, by %s: no longer renewing the "
                "lease of %d job(s), so another worker can take them over",
                silence,
                self._worker.blocker(live),
                len(live) - len(kept),
            )
        return kept

    async def _open(self) -> Backend | None:
        delay = 0.1
        while not self._stop.is_set():
            backend = backend_from_url(self.url)
            try:
                await backend.open()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await backend.close()
                log.warning("lease renewal thread cannot open the store yet (%s)", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            listener = getattr(backend, "listener", None)
            if listener is not None:
                await listener.stop()  # renewal never waits for jobs: no LISTEN connection
            return backend
        return None
