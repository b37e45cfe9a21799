"""Waits the memory store's writes end: its workers' for jobs, its callers' for results.

A wait is a future and one timer, where ``asyncio.Event`` with ``asyncio.timeout`` made an
event per wake-up and a timeout context per wait: two of those waits are in every
``app.run()`` round trip, and they were a tenth of its instructions (docs/profiles.md)."""

from __future__ import annotations

import asyncio


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class Wakeup:
    """Futures woken together by ``wake``; bound to the loop of the waits."""

    __slots__ = ("_futs",)

    def __init__(self) -> None:
        self._futs: list[asyncio.Future[bool]] = []

    def wake(self) -> None:
        """End every wait now (their futures are resolved on this step)."""
        futs = self._futs
        if futs:
            self._futs = []
            for fut in futs:
                if not fut.done():
                    fut.set_result(True)

    async def wait(self, timeout: float) -> bool:
        """Until the next ``wake`` (True) or ``timeout`` seconds (False)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        futs = self._futs
        futs.append(fut)
        timer = loop.call_at(loop.time() + timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            # Timed out or cancelled: still in the list (a wake replaces the list).
            if futs is self._futs and fut in futs:
                futs.remove(fut)
