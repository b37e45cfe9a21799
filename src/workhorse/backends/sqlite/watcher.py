"""Waking waiters on a commit: an in-process signal, inotify on the -wal file, or a stat poll.

SQLite has no cross-process notification. Waiting polls ``os.stat`` of the ``-wal`` file
(every commit changes it) on the event loop, plus an in-process signal for this object's
own writes; the store is only read again when something changed. On Linux, inotify on the
database folder wakes waiters at once and the stat is only a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable

# The longest step between two looks at the -wal file while nothing changes (seconds): the
# default poll_interval, so an idle wait without inotify adds no more than a worker's poll.
IDLE_POLL = 1.0


class Signal:
    """An in-process wake-up: ``fire`` releases every waiter at once."""

    __slots__ = ("gen", "waiters")

    def __init__(self) -> None:
        self.gen = 0
        self.waiters: set[asyncio.Future[None]] = set()

    def fire(self) -> None:
        self.gen += 1
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)


def _release(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_IN_MODIFY, _IN_Q_OVERFLOW = 0x2, 0x4000
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000


class WalWatch:
    """Linux inotify on the database folder: any process's write to the ``-wal`` file
    fires ``signal`` at once, so waiters need not poll. Elsewhere ``start`` returns None
    and the backend polls ``os.stat`` instead. The folder is watched, not the file, so a
    ``-wal`` file deleted and made again (last connection closed) is still seen."""

    def __init__(self, fd: int, name: bytes, signal: Signal) -> None:
        self.fd, self.name, self.signal = fd, name, signal

    @classmethod
    def start(cls, path: str, signal: Signal) -> WalWatch | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd < 0:
                return None
            folder = os.path.dirname(path).encode()
            if libc.inotify_add_watch(fd, folder, _IN_MODIFY) < 0:
                os.close(fd)
                return None
        except (OSError, AttributeError):
            return None
        return cls(fd, os.path.basename(path).encode() + b"-wal", signal)

    def on_readable(self) -> None:
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            self.signal.fire()
            return
        pos, hit = 0, False
        while pos + 16 <= len(buf):  # struct inotify_event: wd, mask, cookie, len, name
            mask = int.from_bytes(buf[pos + 4 : pos + 8], "little")
            size = int.from_bytes(buf[pos + 12 : pos + 16], "little")
            name = buf[pos + 16 : pos + 16 + size].rstrip(b"\0")
            hit = hit or name == self.name or bool(mask & _IN_Q_OVERFLOW)
            pos += 16 + size
        if hit:
            self.signal.fire()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Watcher:
    """Waits for a change to the database at ``path``: a :class:`Signal` this process fires,
    or another process's commit (seen by inotify when ``watch`` and Linux allow, else by
    polling the ``-wal`` file's stat every ``poll`` seconds, backing off while idle)."""

    def __init__(self, path: str, poll: float, watch: bool, is_open: Callable[[], bool]) -> None:
        self.path, self.poll, self.watch = path, poll, watch
        self._wal = path + "-wal"
        self._is_open = is_open
        self.changed = Signal()  # inotify saw some process write the -wal file
        self.inotify: WalWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def mark(self) -> tuple[int, int, int]:
        """What a later :meth:`wait` compares with: it returns at once if this moved on."""
        try:
            st = os.stat(self._wal)
        except FileNotFoundError:
            return (self.changed.gen, 0, 0)
        return (self.changed.gen, st.st_mtime_ns, st.st_size)

    def _watching(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start the inotify watch on first use; True when it serves ``loop``."""
        if self._loop is None and self._is_open():
            self._loop = loop  # tried once per open, even if inotify is missing
            if self.watch:
                self.inotify = WalWatch.start(self.path, self.changed)
            if self.inotify is not None:
                loop.add_reader(self.inotify.fd, self.inotify.on_readable)
        return self.inotify is not None and self._loop is loop

    def close(self) -> None:
        watch, loop = self.inotify, self._loop
        self.inotify = self._loop = None
        if watch is None or loop is None:
            return
        if not loop.is_closed():
            loop.remove_reader(watch.fd)
        watch.close()

    async def wait(
        self, signal: Signal, gen: int, mark: tuple[int, int, int], timeout: float
    ) -> str | None:
        """Sleep until ``signal`` fires ("local"), another commit lands ("wal"), or
        ``timeout`` passes (None). Without inotify, the -wal file's stat is polled on the
        loop, first every ``poll`` seconds, then twice as long each time up to
        ``IDLE_POLL``: a commit just after a change is seen at once, and an idle wait costs
        a few looks, not one a millisecond. With inotify, the stat is only a safety net."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        every = max(self.poll, 0.05) if self._watching(loop) else self.poll
        while True:
            if signal.gen != gen:
                return "local"
            if self.mark() != mark:
                return "wal"
            left = end - loop.time()
            if left <= 0:
                return None
            fut: asyncio.Future[None] = loop.create_future()
            signal.waiters.add(fut)
            self.changed.waiters.add(fut)
            timer = loop.call_later(min(every, left), _release, fut)
            try:
                await fut
            finally:
                timer.cancel()
                signal.waiters.discard(fut)
                self.changed.waiters.discard(fut)
            every = min(every * 2, max(self.poll, IDLE_POLL))
