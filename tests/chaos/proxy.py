"""A TCP proxy between workers and a server that can cut, stall, blackhole and heal.

It runs its own event loop in a thread, so the harness can drive it from sync or async
code. Modes:

- ``cut()``: every connection is reset (RST) and new ones are reset at once, as when a
  server or a middlebox dies.
- ``stall()``: nothing is forwarded, nothing is closed; on ``heal()`` the held bytes flow
  again (a long network hiccup).
- ``blackhole()``: a half-open partition: nothing is forwarded and nothing is closed;
  connections made during it never complete; and after ``heal()`` the connections that
  lived through it stay silent for good. Only new connections work again, so a client
  notices only through its own timeouts (the Celery "silently idle worker" class).
- ``lose(match, times)``: the next ``times`` requests holding ``match`` reach the server,
  and their connection is reset before the reply comes back (a reply lost on the way).
  ``lost`` counts them.
- ``cut_within(match, tail)``: the next request holding ``match`` reaches the server less
  its last ``tail`` bytes, then its connection ends (FIN to the server, as from a producer
  killed while it wrote) and every connection after it is reset (``cut``): the client
  cannot send it again. ``truncated`` counts them once the server closed its end, so it
  had read what came.

Apart from the mode, ``delay(seconds)`` holds every chunk that long in each direction
before passing it on (a server on another machine); ``delay(0)`` ends it. ``sent`` counts
the chunks passed on to the server, so a test can act between a client's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    dead: bool = False  # blackholed for good
    losing: bool = False  # a request went up: reset instead of passing the reply back
    truncated: bool = False  # a request went up less its tail (cut_within)
    flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: close sends RST, not FIN, like a crashed peer.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.port = 0
        self.accepted = 0
        self.latency = 0.0
        self.sent = 0
        self.lost = 0
        self.truncated = 0
        self._lose: tuple[bytes, int] = (b"", 0)
        self._cut: tuple[bytes, int] = (b"", 0)
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- control (any thread) ------------------------------------------------------------
    def start(self) -> Proxy:
        self._thread.start()
        self._call(self._start())
        return self

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> None:
        self._call(self._set("cut"))

    def stall(self) -> None:
        self._call(self._set("stall"))

    def blackhole(self) -> None:
        self._call(self._set("blackhole"))

    def lose(self, match: bytes, times: int = 1) -> None:
        self._call(self._arm(match, times))

    def cut_within(self, match: bytes, tail: int) -> None:
        self._call(self._arm_cut(match, tail))

    @property
    def armed(self) -> bool:
        """A ``lose`` still waits for its request."""
        return self._lose[1] > 0

    def heal(self) -> None:
        self._call(self._set("pass"))

    def delay(self, seconds: float) -> None:
        self.latency = seconds  # read by each chunk as it passes

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    # -- the loop's side -------------------------------------------------------------------
    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        for conn in list(self._conns):
            conn.abort()
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _arm(self, match: bytes, times: int) -> None:
        self._lose = (match, times)

    async def _arm_cut(self, match: bytes, tail: int) -> None:
        self._cut = (match, tail)

    async def _send_cut(self, data: bytes, dst: asyncio.StreamWriter, conn: _Conn) -> bool:
        """Whether ``data`` was the request cut_within waits for: then it went up less its
        tail, the server's end was closed after it, and the client's end reset."""
        match, tail = self._cut
        if not tail or match not in data:
            return False
        self._cut = (b"", 0)
        self.mode = "cut"  # the client's resends are reset: it is gone
        conn.truncated = True
        dst.write(data[:-tail])
        await dst.drain()
        dst.write_eof()  # a FIN after the bytes: the server reads them, then the end
        conn.client.transport.abort()
        return True

    def _should_lose(self, data: bytes) -> bool:
        match, times = self._lose
        if times <= 0 or match not in data:
            return False
        self._lose = (match, times - 1)
        self.lost += 1
        return True

    async def _set(self, mode: str) -> None:
        self.mode = mode
        for conn in list(self._conns):
            if mode == "cut":
                conn.abort()
            elif mode == "stall":
                conn.flowing.clear()
            elif mode == "blackhole":
                conn.dead = True
                conn.flowing.clear()
            elif not conn.dead:
                conn.flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn = _Conn(writer)
        if self.mode == "cut":
            conn.abort()
            return
        self._conns.add(conn)
        try:
            if self.mode == "blackhole":
                conn.dead = True  # a connect during a partition never completes
            elif self.mode == "pass":
                conn.flowing.set()
            try:
                up_reader, conn.upstream = await asyncio.open_connection(*self.target)
            except OSError:
                conn.abort()
                return
            if self.mode == "cut":
                conn.abort()
                return
            await asyncio.gather(
                self._pipe(reader, conn.upstream, conn, up=True),
                self._pipe(up_reader, writer, conn, up=False),
                return_exceptions=True,
            )
        finally:
            self._conns.discard(conn)
            conn.abort()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn, *, up: bool
    ) -> None:
        while True:
            data = await src.read(65536)
            if conn.truncated:
                if up:
                    return  # the client is gone; the server's end closes on its own
                if data:
                    continue  # replies to the whole commands before the cut: nobody reads
                self.truncated += 1  # the server read the cut request and closed
                conn.abort()
                return
            if not data:
                conn.abort()
                return
            if conn.dead:
                continue  # swallowed: a half-open connection, both ends still waiting
            if self.latency:
                await asyncio.sleep(self.latency)
            await conn.flowing.wait()
            if conn.dead:
                continue
            if up and await self._send_cut(data, dst, conn):
                return  # the server's answers and end come on the other pipe
            if up and self._should_lose(data):
                conn.losing = True
            elif not up and conn.losing:
                conn.abort()
                return
            dst.write(data)
            await dst.drain()
            if up:
                self.sent += 1
