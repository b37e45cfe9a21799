"""Frames between the worker and a pooled child: a 4-byte big-endian length, then a JSON
header, optionally followed by a newline and raw JSON bytes (a payload or a result), so
that payloads cross as the bytes they already are and are never encoded twice. orjson
never writes a raw newline, so the first one ends the header."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import orjson

_LEN = struct.Struct("!I")


def frame(header: dict[str, Any], raw: bytes | None = None) -> bytes:
    body = orjson.dumps(header)
    if raw is not None:
        body = b"".join((body, b"\n", raw))
    return _LEN.pack(len(body)) + body


def parse(body: bytes) -> tuple[dict[str, Any], bytes | None]:
    head, sep, raw = body.partition(b"\n")
    return orjson.loads(head), (raw if sep else None)


async def read(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes | None]:
    """The next frame; IncompleteReadError when the child has gone."""
    (n,) = _LEN.unpack(await reader.readexactly(4))
    return parse(await reader.readexactly(n))


class BlockingChannel:
    """The child's end: one job at a time, so plain blocking reads and writes suffice."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock

    def send(self, header: dict[str, Any], raw: bytes | None = None) -> None:
        self.sock.sendall(frame(header, raw))

    def recv(self) -> tuple[dict[str, Any], bytes | None] | None:
        """The next frame, or None once the worker has closed its end."""
        head = self._exactly(4)
        if head is None:
            return None
        (n,) = _LEN.unpack(head)
        body = self._exactly(n)
        if body is None:
            return None
        return parse(body)

    def _exactly(self, n: int) -> bytes | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                return None
            got += k
        return bytes(buf)
