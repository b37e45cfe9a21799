"""The RESP connection of the Redis backend: one socket shared by every caller, replies
parsed by hiredis and matched to their commands in order."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis
from hiredis import pack_command as _pack_command

from workhorse.errors import BackendError, BackendUnavailable, ConfigError

CALL_TIMEOUT = 30.0  # seconds one script call (or pipeline of them) may take
_RESEND_WINDOW = 20.0  # seconds after its first send a command may be sent again
_RESENDS = 3  # times a command whose connection dropped is sent again
_CERT_REQS = ("required", "optional", "none")
_NO_FUNCTION = ("ERR Function not found", "Function not found")


class ReplyError(BackendError):
    """Redis answered a command with an error (a script's error, OOM, READONLY, ...); the
    message is the server's. Raised by a call, or given in place by a pipeline."""


class NoScript(ReplyError):
    """The server lost a script or the function library (a restart, SCRIPT FLUSH): the
    call never ran; load them and send it again."""


class OutOfMemory(ReplyError):
    """Redis is at its memory limit (``maxmemory``) and refused a write; reads answer."""


class _Dropped(BackendUnavailable):
    """The connection went away while the command waited for its reply."""


Dropped = _Dropped  # for callers of Wire.send_now


class _Closed(BackendUnavailable):
    """This client closed the connection: its commands are not sent again."""


class Unreachable(BackendUnavailable):
    """No connection could be made; the message names the URL and what to check."""


def parse_address(url: str, safe: str) -> dict[str, Any]:
    """host, port, db, username, password and the query's other options of a
    ``redis://`` or ``rediss://`` URL, read as redis-py's ``parse_url`` reads them (the
    URL's database number, or ``?db=``, which wins)."""
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query):
        options.setdefault(key, value)  # the first of a repeated option, as parse_url
    try:
        port = parts.port
        if "db" in options:
            options["db"] = int(options["db"])
    except ValueError as exc:
        raise ConfigError(
            f"cannot read the Redis URL {safe!r} ({exc}): write it as "
            "redis://[[user]:password@]host[:port][/db]"
        ) from None
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    if parts.hostname:
        options["host"] = unquote(parts.hostname)
    if port is not None:
        options["port"] = port
    if parts.path and "db" not in options:
        with contextlib.suppress(ValueError):  # '/' or none: database 0
            options["db"] = int(unquote(parts.path).replace("/", ""))
    return options


def _tls(options: Mapping[str, Any]) -> ssl.SSLContext:
    """A verifying TLS context; only ``ssl_cert_reqs=none`` turns verification off."""
    context = ssl.create_default_context(cafile=_opt_str(options.get("ssl_ca_certs")))
    if cert_reqs(options.get("ssl_cert_reqs")) == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def cert_reqs(value: object) -> str:
    reqs = "required" if value is None else str(value).lower()
    if reqs not in _CERT_REQS:
        raise ConfigError(
            f"ssl_cert_reqs={reqs!r} in the Redis URL: use required (the default; optional "
            "means the same, as a server always shows a certificate) or none"
        )
    return reqs


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def bulk(arg: Any) -> bytes:
    """One argument as a RESP bulk string."""
    kind = type(arg)
    if kind is bytes:
        raw: bytes = arg
    elif kind is str:
        raw = arg.encode()
    elif kind is int:
        raw = b"%d" % arg
    elif isinstance(arg, str):  # subclasses such as StrEnum
        raw = str(arg).encode()
    elif isinstance(arg, bytes | int):  # bytes subclasses, bool
        raw = bytes(arg) if isinstance(arg, bytes) else b"%d" % int(arg)
    else:
        raw = repr(arg).encode()
    return b"$%d\r\n%b\r\n" % (len(raw), raw)


class Packed(bytes):
    """A command already in RESP (built by a caller that packs its hot path itself)."""


def _pack(args: Sequence[Any] | Packed) -> bytes:
    """A command in RESP: an array of bulk strings. Hot for bulk enqueue: type() checks
    first. hiredis packs a tuple of str, bytes, int and float as bulk() does, in C (a
    third of the time: a finish batch's hundreds of arguments); anything else goes
    through bulk()."""
    if type(args) is Packed:
        return args
    if type(args) is tuple:
        try:
            packed: bytes = _pack_command(args)  # typed as returning nothing in hiredis.pyi
            return packed
        except TypeError:  # a bool, a list, or a type only bulk() converts (its repr)
            pass
    return b"*%d\r\n" % len(args) + b"".join(map(bulk, args))


class _Protocol(asyncio.Protocol):
    """Replies are parsed and handed to their waiting callers right in data_received: no
    reader task in between, so a reply costs one wake-up, the caller's."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.parser = hiredis.Reader(replyError=ReplyError)
        self.pending: deque[asyncio.Future[Any]] = deque()
        # (deadline, future) per command sent with the connection's call timeout, in send
        # order, and the one timer that checks the oldest (see Wire._track).
        self.deadlines: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        # Set on a subscribed connection: replies nobody asked for (pub/sub messages), and
        # the error that ended the connection.
        self.push: Callable[[Any], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser, pending = self.parser, self.pending
        parser.feed(data)
        try:
            while (reply := parser.gets()) is not False:
                if not pending and self.push is not None:
                    self.push(reply)
                    continue
                fut = pending.popleft()
                if not fut.done():
                    fut.set_result(reply)
        except Exception as exc:  # a protocol error: this connection cannot go on
            self.wire.abort(self, _Dropped(f"bad reply from Redis at {self.wire.safe}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self.wire.abort(self, _Dropped(f"Redis at {self.wire.safe} closed the connection{detail}"))


class Wire:
    """One connection shared by every caller of a backend: commands are written the moment
    they are made and replies matched to them in order. Concurrent callers' commands share
    packets, and a command costs a few microseconds of Python instead of a pool checkout,
    retry wrapper and parser round of a general-purpose client. Blocking commands and
    pub/sub do not come here (they would hold everyone up)."""

    def __init__(self, url: str, safe: str, call_timeout: float = CALL_TIMEOUT) -> None:
        options = parse_address(url, safe)
        self.call_timeout = call_timeout
        self.host = str(options.get("host", "127.0.0.1"))
        self.port = int(options.get("port", 6379))
        self.db = int(options.get("db", 0) or 0)
        self.username = options.get("username")
        self.password = options.get("password")
        self.ssl: ssl.SSLContext | None = None
        if url.startswith("rediss://"):
            self.ssl = _tls(options)
        self.safe = safe
        self._proto: _Protocol | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> _Protocol:
        async with self._lock:
            if self._proto is not None:
                return self._proto
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(5):
                    _, proto = await loop.create_connection(
                        lambda: _Protocol(self), self.host, self.port, ssl=self.ssl
                    )
            except OSError as exc:  # refused, unreachable, unknown host, TLS, timed out
                raise Unreachable(
                    f"cannot connect to Redis at {self.safe}: {exc or 'timed out after 5s'}. "
                    "Check that the server runs and that the URL's host and port are right "
                    "(rediss:// for a TLS port)"
                ) from exc
            assert proto.transport is not None
            sock = proto.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self._proto = proto
            hello: list[tuple[Any, ...]] = []
            if self.password is not None:
                hello.append(("AUTH", self.username, self.password) if self.username
                             else ("AUTH", self.password))  # fmt: skip
            if self.db:
                hello.append(("SELECT", self.db))
            replies = await asyncio.gather(*(self._send(proto, c) for c in hello))
            for command, reply in zip(hello, replies, strict=True):
                if isinstance(reply, ReplyError):
                    self.abort(proto, reply)
                    if command[0] == "AUTH":
                        raise BackendError(
                            f"Redis at {self.safe} refused the credentials: {reply}. Check "
                            "the user name and password in the URL (redis://user:password@"
                            "host:port/db; redis://:password@... for the default user)"
                        ) from None
                    raise BackendError(
                        f"Redis at {self.safe} refused database {self.db}: {reply}. Check "
                        "the database number at the end of the URL (a default server has "
                        "0 to 15)"
                    ) from None
            return proto

    @staticmethod
    def _send(proto: _Protocol, args: Sequence[Any] | Packed) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        proto.pending.append(fut)
        assert proto.transport is not None
        proto.transport.write(_pack(args))
        return fut

    def _track(self, proto: _Protocol, fut: asyncio.Future[Any]) -> None:
        """Give ``fut`` the call timeout. One timer per connection watches the oldest
        command instead of a timeout scope per call (which cost ~5 µs a call, a tenth of
        a one-by-one enqueue's client CPU)."""
        deadlines = proto.deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()
        loop = fut.get_loop()
        deadlines.append((loop.time() + self.call_timeout, fut))
        if proto.timer is None:
            proto.timer = loop.call_at(deadlines[0][0], self._check, proto)

    def _check(self, proto: _Protocol) -> None:
        """The oldest command's deadline came: fail the commands past theirs with
        TimeoutError and drop the connection (as _stuck says), or wait for the next."""
        proto.timer = None
        deadlines = proto.deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()
        if not deadlines or self._proto is not proto:
            return
        loop = deadlines[0][1].get_loop()
        now = loop.time()
        if deadlines[0][0] > now:
            proto.timer = loop.call_at(deadlines[0][0], self._check, proto)
            return
        for deadline, fut in deadlines:
            if deadline > now:
                break  # sent in order with one timeout: the rest are younger
            if not fut.done():
                fut.set_exception(TimeoutError())
        self._stuck(proto)

    def abort(self, proto: _Protocol, error: Exception) -> None:
        """Fail what waits on ``proto`` and forget it; the next command reconnects."""
        if self._proto is proto:
            self._proto = None
        pending, proto.pending = proto.pending, deque()
        proto.deadlines.clear()
        if proto.timer is not None:
            proto.timer.cancel()
            proto.timer = None
        for fut in pending:
            if not fut.done():
                fut.set_exception(error)
        if proto.push is not None:
            proto.push(error)
            proto.push = None
        if proto.transport is not None:
            proto.transport.close()

    async def call(self, *args: Any, timeout: float | None = None) -> Any:
        """One command; an error reply is raised. A command whose connection dropped
        under it is sent again on a fresh one, within _RESEND_WINDOW: only idempotent
        commands come here (state changes carry a call id, see scripts.ONCE), as the server may
        have run it already."""
        command: Sequence[Any] | Packed = args
        if len(args) == 1 and type(args[0]) is Packed:
            command = args[0]
        until = time.monotonic() + _RESEND_WINDOW
        for attempt in range(_RESENDS + 1):
            proto = self._proto or await self.connect()
            try:
                if timeout is None:
                    fut = self._send(proto, command)
                    self._track(proto, fut)
                    reply = await fut  # a TimeoutError here comes from _check
                else:
                    try:
                        async with asyncio.timeout(timeout):
                            reply = await self._send(proto, command)
                    except TimeoutError:
                        self._stuck(proto)
                        raise
            except _Dropped:
                if attempt == _RESENDS or time.monotonic() > until:
                    raise
                continue
            if isinstance(reply, ReplyError):
                raise _error(reply, self.safe)
            return reply
        raise AssertionError("unreachable")

    def send_now(self, command: Packed) -> asyncio.Future[Any] | None:
        """``command`` written at once on the open connection, with the call timeout, for
        a caller that awaits the reply itself (one coroutine level less than ``call``, for
        the one-job enqueue): its future gives an error reply as a value, not raised, and
        raises ``Dropped`` when the connection went (then ``call`` sends it again). None:
        no connection is open (``call`` makes one)."""
        proto = self._proto
        if proto is None:
            return None
        fut = self._send(proto, command)
        self._track(proto, fut)
        return fut

    def _stuck(self, proto: _Protocol) -> None:
        """A call timed out. Replies come in order, so every command sent after it is stuck
        too: the connection is dropped and the other callers send theirs again (with
        their call ids); the timed-out caller's outcome is unknown."""
        self.abort(proto, _Dropped(f"Redis at {self.safe} did not answer in time"))

    async def many(
        self, commands: Sequence[Sequence[Any] | Packed] | Iterator[Packed]
    ) -> list[Any]:
        """Pipelined: every command written at once; replies (errors included, not
        raised) in order. Sent again as ``call`` is. An iterator's commands are written
        one by one as it makes them (see _many_once)."""
        until = time.monotonic() + _RESEND_WINDOW
        made: list[Packed] = []
        for attempt in range(_RESENDS + 1):
            try:
                if isinstance(commands, Iterator):
                    # Consumed whole before the first await: a resend sends what it made.
                    return await self._many_once(commands, made)
                return await self._many_once(commands)
            except _Dropped:
                if attempt == _RESENDS or time.monotonic() > until:
                    raise
                if isinstance(commands, Iterator):
                    commands = made
        raise AssertionError("unreachable")

    async def _many_once(
        self,
        commands: Sequence[Sequence[Any] | Packed] | Iterator[Packed],
        made: list[Packed] | None = None,
    ) -> list[Any]:
        proto = self._proto or await self.connect()
        loop = asyncio.get_running_loop()
        assert proto.transport is not None
        futs: list[asyncio.Future[Any]] = []
        if made is None or not isinstance(commands, Iterator):
            futs = [loop.create_future() for _ in commands]
            proto.pending.extend(futs)
            # One write, so one send() for the lot: on a busy machine every system call to
            # the loopback can cost a context switch to the server.
            proto.transport.write(b"".join(map(_pack, commands)))
        else:
            # Large commands that take long to make (bulk enqueue's chunks): each is
            # written once made, so the server runs it while the next one is made.
            write, pending = proto.transport.write, proto.pending
            for command in commands:
                made.append(command)
                fut = loop.create_future()
                pending.append(fut)
                futs.append(fut)
                write(command)
        for fut in futs:
            self._track(proto, fut)
        replies = await asyncio.gather(*futs)  # a TimeoutError comes from _check
        return [_error(r, self.safe) if isinstance(r, ReplyError) else r for r in replies]

    async def behind_block(self, commands: Sequence[Sequence[Any]], timeout: float) -> list[Any]:
        """Pipelined behind a blocking first command, on a connection of their own: the
        server runs the rest the moment the block ends, no round trip between. One
        ``timeout`` for all (the block's own plus a margin), never sent again; replies
        (errors included, not raised) in order."""
        proto = self._proto or await self.connect()
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[Any]] = [loop.create_future() for _ in commands]
        proto.pending.extend(futs)
        assert proto.transport is not None
        proto.transport.write(b"".join(map(_pack, commands)))
        try:
            async with asyncio.timeout(timeout):
                replies = await asyncio.gather(*futs)
        except TimeoutError:
            self._stuck(proto)
            raise
        return [_error(r, self.safe) if isinstance(r, ReplyError) else r for r in replies]

    async def read_after_time(self, reads: Sequence[Sequence[Any]]) -> tuple[int, list[Any]]:
        """The server's millisecond, then ``reads``, in one pipeline: one server runs them
        in order, so the reads see everything written before that millisecond."""
        (sec, usec), *replies = await self.many([("TIME",), *reads])
        return int(sec) * 1000 + int(usec) // 1000, replies

    async def close(self) -> None:
        proto = self._proto
        if proto is not None:
            self.abort(proto, _Closed(f"the connection to Redis at {self.safe} was closed"))
            await asyncio.sleep(0)  # let the transport finish closing


def error_of(reply: ReplyError, safe: str = "") -> ReplyError:
    """The exception an error reply raises (NoScript for a lost script or library,
    OutOfMemory for a write refused at maxmemory)."""
    return _error(reply, safe)


def _error(reply: ReplyError, safe: str = "") -> ReplyError:
    message = str(reply)
    # A script cache or a Function library the server lost (a restart without
    # persistence, SCRIPT FLUSH, FUNCTION FLUSH): the call never ran, load and send again.
    if message.startswith("NOSCRIPT") or message.startswith(_NO_FUNCTION):
        return NoScript(message)
    if message.startswith("OOM") or "> 'maxmemory'" in message:
        return out_of_memory(message, safe)
    return reply


def out_of_memory(message: str, safe: str) -> OutOfMemory:
    """The error of a write refused at maxmemory: the cause and the fix, with the server's
    words."""
    where = f"Redis at {safe}" if safe else "Redis"
    return OutOfMemory(
        f"{where} is at its memory limit (maxmemory) and refused this write; reads still "
        "answer. Raise maxmemory (CONFIG SET maxmemory, or the server's config), then free "
        f"memory: 'workhorse purge' deletes finished jobs. (Redis said: {message})"
    )
