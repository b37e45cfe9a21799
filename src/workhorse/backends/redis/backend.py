"""The Redis backend: ``redis://[:password@]host:port/db?prefix=workhorse`` (or ``rediss://``),
and Redis Cluster: ``redis+cluster://host:port,host:port/?prefix=workhorse`` (see
redis_cluster.py).

Every state change is one Lua script (``redis_lua/``), loaded once and called by SHA, so a
job is never left half-moved by a crash between two commands, and the server's ``TIME``
decides due times and lease expiry. Idle workers block on a per-queue wake-up list;
callers waiting for results block on a pub/sub channel.

Keys (``P`` is the prefix, ``Q`` a queue; ``{...}`` is the hash tag that picks the slot)::

    slot {P:Q}, one per queue
      {P:Q}:j:<id>          hash   the job's record (short field names, see _FIELDS)
      {P:Q}:ready           zset   due jobs; score -priority, member due-time|seq|id
      {P:Q}:sched           zset   jobs due later; score due time
      {P:Q}:active          zset   leased jobs; score lease expiry (reclaim scans it)
      {P:Q}:i:<state>       zset   ids by creation time per state (query, counts)
      {P:Q}:f:<state>       zset   finished ids by finish time (retention, purge)
      {P:Q}:all             zset   every id by creation time (query)
      {P:Q}:seq             string FIFO sequence
      {P:Q}:wake            list   wake-up tokens for blocked workers (at most 32)
      {P:Q}:paused          string present while the queue is paused
      {P:Q}:ownkeep         string present once a job of the queue had its own keep_for
      {P:Q}:dedup           hash   dedup key -> id of the live job holding it (per queue)
      {P:Q}:watch           set    ids whose finish a caller waits for
      {P:Q}:events          stream the queue's job events, capped (MAXLEN ~)
      {P:Q}:call:<id>       string a state-changing call's mark (and reply), 60 s (_ONCE)
    slot {P}, shared
      {P}:events            stream events with no queue (publish()), capped (MAXLEN ~)
      {P}:queues            set    queues ever used (written by the client, not a script)
      {P}:epoch             string a random mark: its loss means the server lost its data
      {P}:kv:<key>          string set_if_absent;      {P}:n:<key>  string counters
      {P}:kvidx             zset   lasting kv keys, for kv_scan
      {P}:workers           hash   worker id -> record; {P}:workers:exp zset  beat expiry
      {P}:call:<id>         string as {P:Q}:call:<id>, for calls with no queue
    channel {P}:finished    records of watched jobs that just finished (classic PUBLISH)

Every script call touches the keys of one slot and names one of them in KEYS[1], so a
cluster client can route it and a cluster node can run it. The event log is the streams
merged: an entry id <ms>-<seq> is the cursor ms * 1000000 + seq, and events() reads only
below the server's current millisecond, so a cursor never passes an event still to come
(docs/decisions.md, "Redis: one slot per call"). A key prefix lets several apps share a
server.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from workhorse import codec
from workhorse.backends.base import Backend, Capabilities, RenewResult
from workhorse.backends.redis.cluster import SCHEMES as CLUSTER_SCHEMES
from workhorse.backends.redis.cluster import ClusterAddress, ClusterWire, parse_cluster_netloc
from workhorse.errors import BackendError, ConfigError
from workhorse.job import (
    FINISHED_STATES,
    MAX_STALLS,
    EnqueueResult,
    Event,
    Job,
    JobState,
    Lease,
    NewJob,
    Outcome,
    WorkerInfo,
    to_datetime,
)
from workhorse.urls import check_options, redact

log = logging.getLogger("workhorse.redis")

_SCRIPTS = (
    "enqueue", "claim", "renew", "finish", "update", "reclaim", "cancel", "retry", "peek",
    "fetch", "counts", "query", "purge", "pause", "publish", "counter", "beat",
    "workers", "kv", "quarantine", "release",
)  # fmt: skip
_OUR_PARAMS = {"prefix", "max_events", "call_timeout"}
_WIRE_PARAMS = {"db"}  # read by the connection itself
_TLS_PARAMS = {"ssl_ca_certs", "ssl_cert_reqs"}  # rediss:// only
_CERT_REQS = ("required", "optional", "none")
_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_COUNT_STATES = (
    JobState.QUEUED,
    JobState.SCHEDULED,
    JobState.ACTIVE,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
)
_STATE_NAMES = frozenset(s.value.encode() for s in JobState)
_LABELS = {
    b"d": "data", b"pg": "progress", b"res": "result", b"e": "error", b"lg": "logs",
    b"s": "state", b"t": "task", b"q": "queue", b"c": "created_at", b"r": "run_at",
    b"p": "priority", b"a": "attempts", b"m": "max_attempts", b"to": "timeout",
    b"st": "started_at", b"f": "finished_at", b"x": "lease_expires_at", b"sl": "stalls",
    b"ms": "max_stalls",
}  # fmt: skip
_WHERE_CAP = 100_000  # ids whose queue this client remembers (it enqueued them)
_CALL_TIMEOUT = 30.0  # seconds one script call (or pipeline of them) may take
_HINT_AGE = 0.5  # seconds a claim's idle hint stands in for a peek
_EPOCH_EVERY = 1.0  # seconds between idle workers' checks of the epoch mark
_MIN_VERSION = (6, 2)  # XRANGE with an exclusive start, float BLPOP timeouts
_RESEND_WINDOW = 20.0  # seconds after its first send a command may be sent again
_RESENDS = 3  # times a command whose connection dropped is sent again
# Scripts whose second run would apply a change again or answer otherwise: each call
# carries an id, and a replay returns the first run's reply (_prelude.lua, once()).
_ONCE = frozenset({"claim", "finish", "update", "counter", "kv", "publish", "release",
                   "retry", "purge", "quarantine"})  # fmt: skip


@dataclass(slots=True)
class _Script:
    name: str
    text: str
    sha: str


def _load_script_texts(head: str = "") -> dict[str, _Script]:
    """``head``: '#!lua\n' on a cluster of Redis 7+, where a script so marked is refused
    the moment it touches a second slot, even one on the same node."""
    folder = resources.files("workhorse.backends.redis").joinpath("lua")
    prelude = head + folder.joinpath("_prelude.lua").read_text("utf-8")
    out = {}
    for name in _SCRIPTS:
        body = folder.joinpath(f"{name}.lua").read_text("utf-8")
        # The body runs inside once() (see _prelude.lua), which replays a call id's reply.
        text = f"{prelude}\nreturn once('{name}', function()\n{body}\nend)\n"
        out[name] = _Script(name, text, hashlib.sha1(text.encode()).hexdigest())
    return out


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def _float(raw: bytes | None) -> float | None:
    return None if raw is None or raw == b"" else float(raw)


def _json(raw: bytes | None) -> Any:
    return None if raw is None or raw == b"" else codec.loads(raw)


def _cursor(entry_id: bytes) -> int:
    """A stream entry id <ms>-<seq> as the event log's integer cursor."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms) * 1_000_000 + int(seq)


# Hash fields holding JSON, with the names errors use for them.
_JSON_FIELDS = ((b"d", "data"), (b"pg", "progress"), (b"res", "result"), (b"e", "error"),
                (b"lg", "logs"))  # fmt: skip
_JSON_NAMES = frozenset(f for f, _ in _JSON_FIELDS)
_UNDECODABLE = (KeyError, ValueError, TypeError, IndexError, AttributeError)


def _quarantined(error: Any) -> bool:
    return isinstance(error, dict) and error.get("type") == "Quarantined"


def _salvage(rec: list[Any]) -> tuple[Job, dict[bytes, str]]:
    """A record ``_job`` refused, read as far as it goes: the fields that do not decode
    are left out (None) and returned with the reason."""
    flat = rec[2]
    h: dict[bytes, bytes] = dict(zip(flat[::2], flat[1::2], strict=False))
    bad: dict[bytes, str] = {}
    fixed = dict(h)
    for field, _ in _JSON_FIELDS:
        if field in h and h[field] != b"":
            try:
                codec.loads(h[field])
            except ValueError as exc:
                bad[field] = str(exc)
                fixed[field] = b"null"
    state = rec[1]
    if state not in _STATE_NAMES:
        bad[b"s"] = f"unknown state {state!r}"
        state = b"failed"
    for field, default in ((b"t", b"?"), (b"q", b"?"), (b"c", b"0"), (b"r", b"0")):
        if field not in h:
            bad[field] = "missing"
            fixed[field] = default
    for field in (b"c", b"r", b"p", b"a", b"m", b"to", b"st", b"f", b"x", b"sl", b"ms"):
        if fixed.get(field):
            try:
                float(fixed[field])
            except ValueError:
                bad[field] = f"not a number: {fixed[field][:50]!r}"
                fixed[field] = b"0"
    flat = [x for kv in fixed.items() for x in kv]
    try:
        return RedisBackend._job([rec[0], state, flat]), bad
    except _UNDECODABLE as exc:  # a last resort: the id alone is certain
        bad[b"?"] = str(exc)
        epoch = to_datetime(0.0)
        assert epoch is not None
        job = Job(rec[0].decode("utf-8", "replace"), "?", "?", JobState.FAILED, None, 0, 0, 1,
                  epoch, epoch)  # fmt: skip
        return job, bad


class _Dropped(RedisConnectionError):
    """The connection went away while the command waited for its reply."""


class _Closed(RedisConnectionError):
    """This client closed the connection: its commands are not sent again."""


class _Unreachable(RedisConnectionError):
    """No connection could be made; the message names the URL and what to check."""


def _tls(options: Mapping[str, Any]) -> ssl.SSLContext:
    """A verifying TLS context; only ``ssl_cert_reqs=none`` turns verification off."""
    context = ssl.create_default_context(cafile=_opt_str(options.get("ssl_ca_certs")))
    if _cert_reqs(options.get("ssl_cert_reqs")) == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _cert_reqs(value: object) -> str:
    reqs = "required" if value is None else str(value).lower()
    if reqs not in _CERT_REQS:
        raise ConfigError(
            f"ssl_cert_reqs={reqs!r} in the Redis URL: use required (the default; optional "
            "means the same, as a server always shows a certificate) or none"
        )
    return reqs


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


_ENQUEUE_CHUNK = 250  # jobs per enqueue script call
_ENQUEUE_ARGS = 14  # script arguments per job (see enqueue.lua)


def _bulk(arg: Any) -> bytes:
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


def _pack(args: Sequence[Any]) -> bytes:
    """A command in RESP: an array of bulk strings. Hot for bulk enqueue: type() checks
    first, one join."""
    return b"*%d\r\n" % len(args) + b"".join(map(_bulk, args))


class _Protocol(asyncio.Protocol):
    """Replies are parsed and handed to their waiting callers right in data_received: no
    reader task in between, so a reply costs one wake-up, the caller's."""

    def __init__(self, wire: _Wire) -> None:
        self.wire = wire
        self.parser = hiredis.Reader(replyError=ResponseError)
        self.pending: deque[asyncio.Future[Any]] = deque()
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


class _Wire:
    """One connection shared by every caller of a backend: commands are written the moment
    they are made and replies matched to them in order. Concurrent callers' commands share
    packets, and a command costs a few microseconds of Python instead of a pool checkout,
    retry wrapper and parser round of a general-purpose client. Blocking commands and
    pub/sub do not come here (they would hold everyone up)."""

    def __init__(self, url: str, safe: str, call_timeout: float = _CALL_TIMEOUT) -> None:
        options = parse_url(url)
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
                raise _Unreachable(
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
                if isinstance(reply, ResponseError):
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
    def _send(proto: _Protocol, args: Sequence[Any]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        proto.pending.append(fut)
        assert proto.transport is not None
        proto.transport.write(_pack(args))
        return fut

    def abort(self, proto: _Protocol, error: Exception) -> None:
        """Fail what waits on ``proto`` and forget it; the next command reconnects."""
        if self._proto is proto:
            self._proto = None
        pending, proto.pending = proto.pending, deque()
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
        commands come here (state changes carry a call id, see _ONCE), as the server may
        have run it already."""
        until = time.monotonic() + _RESEND_WINDOW
        for attempt in range(_RESENDS + 1):
            proto = self._proto or await self.connect()
            try:
                async with asyncio.timeout(timeout or self.call_timeout):
                    reply = await self._send(proto, args)
            except _Dropped:
                if attempt == _RESENDS or time.monotonic() > until:
                    raise
                continue
            except TimeoutError:
                self._stuck(proto)
                raise
            if isinstance(reply, ResponseError):
                raise _error(reply)
            return reply
        raise AssertionError("unreachable")

    def _stuck(self, proto: _Protocol) -> None:
        """A call timed out. Replies come in order, so every command sent after it is stuck
        too: the connection is dropped and the other callers send theirs again (with
        their call ids); the timed-out caller's outcome is unknown."""
        self.abort(proto, _Dropped(f"Redis at {self.safe} did not answer in time"))

    async def many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Pipelined: every command written at once; replies (errors included, not
        raised) in order. Sent again as ``call`` is."""
        until = time.monotonic() + _RESEND_WINDOW
        for attempt in range(_RESENDS + 1):
            try:
                return await self._many_once(commands)
            except _Dropped:
                if attempt == _RESENDS or time.monotonic() > until:
                    raise
        raise AssertionError("unreachable")

    async def _many_once(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        proto = self._proto or await self.connect()
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[Any]] = [loop.create_future() for _ in commands]
        proto.pending.extend(futs)
        assert proto.transport is not None
        # One write, so one send() for the lot: on a busy machine every system call to
        # the loopback can cost a context switch to the server.
        proto.transport.write(b"".join(map(_pack, commands)))
        try:
            async with asyncio.timeout(self.call_timeout):
                replies = await asyncio.gather(*futs)
        except TimeoutError:
            self._stuck(proto)
            raise
        return [_error(r) if isinstance(r, ResponseError) else r for r in replies]

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


def _error(reply: ResponseError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return reply


class RedisBackend(Backend):
    capabilities = Capabilities(durable=True, multi_process=True, multi_machine=True)

    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        self.url = redact(url)  # shown in logs and status: never the password
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", *CLUSTER_SCHEMES):
            raise ConfigError(f"not a Redis URL: {redact(url)!r}; use redis://host:6379/0")
        self._cluster: ClusterAddress | None = None
        if parts.scheme in CLUSTER_SCHEMES:
            self._cluster = parse_cluster_netloc(
                parts.scheme, parts.netloc, parts.path, redact(url)
            )
            others = sorted({k for k, _ in parse_qsl(parts.query) if k not in _OUR_PARAMS})
            if others:
                raise ConfigError(
                    f"a redis+cluster:// URL takes only {', '.join(sorted(_OUR_PARAMS))}; "
                    f"remove {', '.join(others)}"
                )
        params = parse_qsl(parts.query, keep_blank_values=True)
        tls = _TLS_PARAMS if parts.scheme == "rediss" else set()
        check_options([k for k, _ in params], _OUR_PARAMS | _WIRE_PARAMS | tls, parts.scheme)
        _cert_reqs(dict(params).get("ssl_cert_reqs"))
        ours = {k: v for k, v in params if k in _OUR_PARAMS}
        prefix = ours.get("prefix", "workhorse")
        if not prefix or len(prefix) > 100 or not set(prefix) <= _PREFIX_CHARS:
            raise ConfigError(
                f"invalid Redis key prefix {prefix!r}: use 1-100 letters, digits, '_', '-', '.'"
            )
        try:
            self._max_events = int(ours.get("max_events", "100000"))
        except ValueError:
            raise ConfigError("max_events in the Redis URL must be an integer") from None
        try:
            # A half-open connection answers nothing: give a call up after this long.
            self._call_timeout = float(ours.get("call_timeout", _CALL_TIMEOUT))
        except ValueError:
            raise ConfigError("call_timeout in the Redis URL must be seconds") from None
        self.prefix = prefix
        self._g = f"{{{prefix}}}:"
        self._client_url = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in params if k not in _OUR_PARAMS]))
        )
        self._safe = redact(url)
        self._scripts = _load_script_texts()
        self._wire: _Wire | ClusterWire | None = None
        self._node_url = self._client_url  # where subscriptions and blocked pops connect
        self._idle_blockers: list[_Wire] = []  # connections for BLPOP, one per waiter
        self._sub: tuple[_Wire, asyncio.Queue[Any]] | None = None  # the 'finished' channel
        self._sub_lock = asyncio.Lock()
        self._epoch: bytes | None = None
        self._where: dict[str, str] = {}  # job id -> queue, for the jobs this client knows
        self._recent: dict[str, Job] = {}  # finished records heard while waiting for others
        # job id -> the subscription that was up when enqueue() watched the job
        self._watched: dict[str, tuple[_Wire, asyncio.Queue[Any]]] = {}
        self._qk: dict[str, str] = {}  # queue -> its key prefix
        self._listed: set[str] = set()  # queues this client put in {P}:queues
        # queue -> (when, [paused, due, wait]) after its last claim
        self._idle: dict[str, tuple[float, list[Any]]] = {}
        self._epoch_due = 0.0  # wait_for_jobs checks the epoch mark again after this
        self._ids = os.urandom(8).hex() + "."  # call ids: this prefix and a sequence
        self._seq = itertools.count()
        self._records: dict[str, bytes] = {}  # queue's key prefix -> its call ids' prefix

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        if self._wire is not None:
            return
        wire = self._make_wire()
        try:
            info = (await wire.call("INFO", "server")).decode()
            found = re.search(r"redis_version:(\d+)\.(\d+)", info)
            version = (int(found[1]), int(found[2])) if found else (0, 0)
            if version < _MIN_VERSION:
                raise BackendError(
                    f"Redis at {self._safe} is version {version[0]}.{version[1]}; workhorse "
                    f"needs {_MIN_VERSION[0]}.{_MIN_VERSION[1]} or newer"
                )
            if isinstance(wire, ClusterWire):
                if version >= (7, 0):
                    self._scripts = _load_script_texts("#!lua\n")
                assert self._cluster is not None
                self._node_url = self._cluster.node_url(*await wire.first_node())
            await self._load_scripts(wire)
            await self._check_eviction(wire)
            self._epoch = await self._read_epoch(wire)
        except _Unreachable as exc:
            await wire.close()
            raise BackendError(str(exc)) from exc
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
            await wire.close()
            raise BackendError(
                f"cannot reach Redis at {self._safe}: {exc}. Check that the server runs, "
                "and the URL's host, port, database and password"
            ) from exc
        except BaseException:
            await wire.close()
            raise
        self._wire = wire

    async def close(self) -> None:
        wires = [self._wire, *self._idle_blockers, self._sub[0] if self._sub else None]
        self._wire, self._sub, self._idle_blockers = None, None, []
        self._watched.clear()
        for wire in wires:
            if wire is not None:
                await wire.close()

    async def drop(self) -> None:
        """Delete every key under this backend's prefix (test clean-up). Works closed too."""
        wire = self._wire or self._make_wire()
        patterns = (f"{{{self.prefix}}}:*", f"{{{self.prefix}:*")
        try:
            if isinstance(wire, ClusterWire):
                await wire.scan_delete(patterns)  # every primary holds some
            for pattern in () if isinstance(wire, ClusterWire) else patterns:
                cursor = b"0"
                while True:
                    cursor, keys = await wire.call("SCAN", cursor, "MATCH", pattern,
                                                   "COUNT", 1000)  # fmt: skip
                    if keys:
                        await wire.call("UNLINK", *keys)
                    if cursor == b"0":
                        break
        finally:
            if wire is not self._wire:
                await wire.close()
        self._where.clear()
        self._recent.clear()
        self._watched.clear()
        self._listed.clear()

    def _make_wire(self) -> _Wire | ClusterWire:
        if self._cluster is not None:
            return ClusterWire(self._cluster, self._safe, self._call_timeout)
        return _Wire(self._client_url, self._safe, self._call_timeout)

    async def server_info(self) -> dict[str, Any]:
        """For ``workhorse check``: the mode, and the server's version or the cluster's
        primaries with their versions and slots."""
        wire = self._conn()
        if isinstance(wire, ClusterWire):
            return {"redis_mode": "cluster", "redis_nodes": await wire.nodes()}
        info = (await wire.call("INFO", "server")).decode()
        found = re.search(r"redis_version:(\S+)", info)
        return {"redis_mode": "standalone", "redis_version": found[1] if found else "?"}

    def _conn(self) -> _Wire | ClusterWire:
        if self._wire is None:
            raise BackendError(f"the Redis backend for {self._safe} is not open; call open()")
        return self._wire

    async def _load_scripts(self, wire: _Wire | ClusterWire) -> None:
        scripts = list(self._scripts.values())
        shas = await wire.many([("SCRIPT", "LOAD", s.text) for s in scripts])
        for script, sha in zip(scripts, shas, strict=True):
            if isinstance(sha, Exception):
                raise sha
            script.sha = sha.decode()

    async def _check_eviction(self, wire: _Wire | ClusterWire) -> None:
        try:
            reply = await wire.call("CONFIG", "GET", "maxmemory-policy")
        except ResponseError:  # CONFIG is often disabled on managed servers
            log.debug("cannot read maxmemory-policy on %s", self._safe)
            return
        policy = reply[1].decode() if len(reply) > 1 else ""
        if policy and policy != "noeviction" and not policy.startswith("volatile-"):
            log.warning(
                "Redis at %s has maxmemory-policy=%s: when memory runs out it may evict any "
                "key, including queued jobs and leases, which then vanish without a trace. "
                "Set maxmemory-policy noeviction (or a volatile-* policy) for workhorse.",
                self._safe,
                policy,
            )

    async def _read_epoch(self, wire: _Wire | ClusterWire) -> bytes:
        key = self._g + "epoch"
        mark = os.urandom(8).hex().encode()
        _, found = await wire.many([("SET", key, mark, "NX"), ("GET", key)])
        return found if isinstance(found, bytes) else mark

    async def _check_epoch(self) -> None:
        """Report a server that lost its data (a restart without persistence, a flush)."""
        wire = self._conn()
        found = await wire.call("GET", self._g + "epoch")
        if found is not None and found == self._epoch:
            return
        fresh = await self._read_epoch(wire)
        self._listed.clear()
        log.error(
            "Redis at %s lost its data (its epoch mark %s): queued, scheduled and running "
            "jobs, results and events stored before are gone. Was the server restarted "
            "without persistence, flushed, or evicting keys? Enable AOF or RDB persistence "
            "and maxmemory-policy noeviction.",
            self._safe,
            "is missing" if found is None else "changed",
        )
        self._epoch = fresh

    # -- script calls ----------------------------------------------------------------
    def _q(self, queue: str) -> str:
        qk = self._qk.get(queue)
        if qk is None:
            qk = self._qk[queue] = f"{{{self.prefix}:{queue}}}:"
        return qk

    def _slot(self, qk: str) -> str:
        """KEYS[1] of a script call: a key of the one slot it touches, for routing."""
        return qk + "ready" if qk else self._g + "queues"

    def _eval(self, name: str, qk: str, args: Sequence[Any], once: bool = True) -> tuple[Any, ...]:
        """The EVALSHA of a script call; one that must not run twice names its call record
        (KEYS[2], in the same slot) with an id of its own."""
        sha = self._scripts[name].sha
        if once and name in _ONCE:
            prefix = self._records.get(qk)
            if prefix is None:
                prefix = self._records[qk] = f"{qk or self._g}call:{self._ids}".encode()
            record = prefix + b"%d" % next(self._seq)
            return ("EVALSHA", sha, 2, self._slot(qk), record, qk, self._g, self._max_events,
                    *args)  # fmt: skip
        return ("EVALSHA", sha, 1, self._slot(qk), qk, self._g, self._max_events, *args)

    async def _call(self, name: str, qk: str, *args: Any, once: bool = True) -> Any:
        wire = self._conn()
        call = self._eval(name, qk, args, once)
        try:
            return await wire.call(*call)
        except NoScriptError:
            # The server restarted or its script cache was flushed: load them again.
            await self._load_scripts(wire)
            return await wire.call(*call)

    async def _call_many(self, calls: Sequence[tuple[str, str, Sequence[Any]]]) -> list[Any]:
        """Several script calls in one pipelined round trip; each is atomic on its own."""
        if len(calls) == 1:
            name, qk, args = calls[0]
            return [await self._call(name, qk, *args)]
        wire = self._conn()
        results: list[Any] = [None] * len(calls)
        evals = [self._eval(*c) for c in calls]
        todo = list(range(len(calls)))
        for attempt in range(2):
            replies = await wire.many([evals[i] for i in todo])
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(i)  # never ran: safe to send again
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                break
            await self._load_scripts(wire)
            todo = missing
        return results

    def _remember(self, job_id: str, queue: str) -> None:
        where = self._where
        if len(where) >= _WHERE_CAP:
            for old in list(where)[: _WHERE_CAP // 2]:
                del where[old]
        where[job_id] = queue

    async def now(self) -> float:
        sec, usec = await self._conn().call("TIME")
        return int(sec) + int(usec) / 1_000_000

    # -- producing -------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob], *, watch: bool = False) -> list[EnqueueResult]:
        # Runs of consecutive jobs of one queue, in the caller's order: a batch that mixes
        # queues must be applied in order (a later job may meet an earlier one's dedup key).
        runs: list[tuple[str, list[Any]]] = []
        for new in jobs:
            if not runs or runs[-1][0] != new.queue:
                runs.append((new.queue, []))
            runs[-1][1].extend(
                (
                    new.id,
                    new.task,
                    new.data,
                    new.priority,
                    _num(new.delay),
                    _num(new.at),
                    new.max_attempts,
                    _num(new.timeout),
                    _num(new.lease),
                    "" if new.dedup_key is None else new.dedup_key,
                    "1" if new.replace else "0",
                    _num(new.keep_for),
                    "1" if new.hold else "0",
                    new.max_stalls,
                )
            )
        # Chunks of a few hundred jobs, pipelined: Redis runs one chunk's script while
        # this process still packs the next (one big script would serialise the two).
        # enqueue_watched: with the subscription up, the script watches the jobs right away
        # (the caller's wait then needs no fetch of its own; see wait_finished).
        sub = self._sub if watch else None
        chunks = [
            [q, "0" if sub is None else "1", *args[k : k + _ENQUEUE_CHUNK * _ENQUEUE_ARGS]]
            for q, args in runs
            for k in range(0, len(args), _ENQUEUE_CHUNK * _ENQUEUE_ARGS)
        ]
        await self._list_queues({q for q, _ in runs})
        calls = [("enqueue", self._q(str(c[0])), c) for c in chunks]
        replies = await self._call_many(calls)
        # Replies come per chunk, in each chunk's order: map them back to the jobs.
        found: dict[str, EnqueueResult] = {}
        for args, reply in zip(chunks, replies, strict=True):
            for k, i in zip(
                range(2, len(args), _ENQUEUE_ARGS), range(0, len(reply), 5), strict=True
            ):
                job_id, queue = reply[i].decode(), reply[i + 3].decode()
                self._remember(job_id, queue)
                state = JobState(reply[i + 2].decode())
                found[args[k]] = EnqueueResult(
                    job_id, bool(reply[i + 1]), state, bool(reply[i + 4])
                )
                if sub is not None and state not in FINISHED_STATES:
                    self._watch(job_id, sub)
        return [found[new.id] for new in jobs]

    async def enqueue_watched(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Enqueue and, in the same script call, watch the jobs' finish (their record is
        then published whole), so the caller's first wait needs no look of its own."""
        return await self.enqueue(jobs, watch=True)

    # -- consuming -------------------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        leases: list[Lease] = []
        base = os.urandom(8).hex() + "."
        await self._list_queues(queues)  # reclaim must see them, even after a data loss
        for queue in queues:
            want = limit - len(leases)
            if want <= 0:
                break
            reply, idle = await self._call(
                "claim", self._q(queue), worker, want, repr(float(lease)), base
            )
            self._idle[queue] = (time.monotonic(), idle)
            for i in range(0, len(reply), 9):
                timeout = reply[i + 6]
                leases.append(
                    Lease(
                        reply[i].decode(),
                        reply[i + 1].decode(),
                        reply[i + 2].decode(),
                        queue,
                        reply[i + 3],
                        reply[i + 4],
                        int(reply[i + 5]),
                        float(timeout) if timeout else None,
                        float(reply[i + 7]),
                        float(reply[i + 8]),
                    )
                )
        return leases

    async def renew(self, leases: Sequence[Lease]) -> RenewResult:
        by_queue: dict[str, list[Any]] = {}
        order: dict[str, list[str]] = {}
        for lease in leases:
            by_queue.setdefault(lease.queue, []).extend(
                (lease.job_id, lease.token, repr(float(lease.lease)))
            )
            order.setdefault(lease.queue, []).append(lease.job_id)
        if not by_queue:
            return RenewResult(frozenset(), frozenset())
        replies = await self._call_many(
            [("renew", self._q(q), args) for q, args in by_queue.items()]
        )
        lost, cancel = set(), set()
        for q, reply in zip(by_queue, replies, strict=True):
            for job_id, code in zip(order[q], reply, strict=True):
                if code == 0:
                    lost.add(job_id)
                elif code == 2:
                    cancel.add(job_id)
        return RenewResult(frozenset(lost), frozenset(cancel))

    async def finish(self, items: Sequence[tuple[Lease, Outcome]]) -> list[bool]:
        by_queue: dict[str, list[Any]] = {}
        slots: dict[str, list[int]] = {}
        dumps = codec.dumps
        for n, (lease, out) in enumerate(items):
            by_queue.setdefault(lease.queue, []).extend(
                (
                    lease.job_id,
                    lease.token,
                    out.kind,
                    b"" if out.result is None else out.result,
                    b"" if out.error is None else dumps(out.error),
                    repr(float(out.delay)),
                    "1" if out.refund else "0",
                    dumps(out.logs) if out.logs else b"",
                )
            )
            slots.setdefault(lease.queue, []).append(n)
        if not by_queue:
            return []
        replies = await self._call_many(
            [("finish", self._q(q), args) for q, args in by_queue.items()]
        )
        accepted = [False] * len(items)
        for q, reply in zip(by_queue, replies, strict=True):
            for n, code in zip(slots[q], reply, strict=True):
                accepted[n] = code == 1
        return accepted

    async def update(
        self, lease: Lease, progress: Any = None, logs: Sequence[dict[str, Any]] = ()
    ) -> bool:
        payload = b"" if progress is None else codec.dumps(progress)
        data = b"" if progress is None else codec.dumps({"progress": progress})
        ok = await self._call(
            "update",
            self._q(lease.queue),
            lease.job_id,
            lease.token,
            payload,
            data,
            codec.dumps(list(logs)) if logs else b"",
        )
        return bool(ok)

    async def _queues(self) -> list[str]:
        members = await self._conn().call("SMEMBERS", self._g + "queues")
        return sorted(m.decode() for m in members)

    async def _list_queues(self, queues: Iterable[str]) -> None:
        """Add queues to {P}:queues (which reclaim, query, counts and events walk) before
        their first job: a set in another slot than the queue's, so a command of its own.
        Once per queue and process, again after the server lost its data."""
        new = [q for q in queues if q not in self._listed]
        if new:
            await self._conn().call("SADD", self._g + "queues", *new)
            self._listed.update(new)

    async def reclaim_expired(self) -> list[str]:
        await self._check_epoch()
        queues = await self._queues()
        if not queues:
            return []
        replies = await self._call_many([("reclaim", self._q(q), ()) for q in queues])
        return [job_id.decode() for reply in replies for job_id in reply]

    async def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        if not queues or timeout <= 0:
            return
        peeks = self._idle_hints(queues)
        if peeks is None:
            peeks = await self._call_many([("peek", self._q(q), ()) for q in queues])
        if time.monotonic() >= self._epoch_due:
            self._epoch_due = time.monotonic() + _EPOCH_EVERY
            await self._check_epoch()
        wake_keys = []
        for q, (paused, due, wait) in zip(queues, peeks, strict=True):
            wake_keys.append(self._q(q) + "wake")
            if paused:
                continue
            if due:
                return
            if wait:
                timeout = min(timeout, float(wait))
        if timeout <= 0.001:
            return
        if isinstance(cluster := self._conn(), ClusterWire):
            await cluster.blpop_any(wake_keys, timeout)  # one slot per queue: a pop each
            return
        # A connection of its own: a blocked one can carry nothing else. The server bounds
        # the wait; the client's own bound covers a silent network.
        wire = self._idle_blockers.pop() if self._idle_blockers else self._new_wire()
        try:
            await wire.call("BLPOP", *wake_keys, round(timeout, 3), timeout=timeout + 5)
        except BaseException:
            await wire.close()  # cancelled or broken mid-wait: its reply would come later
            raise
        self._idle_blockers.append(wire)

    def _idle_hints(self, queues: Sequence[str]) -> list[Any] | None:
        """(paused, due, wait) of each queue as its claim of a moment ago left it, or None
        (then a peek asks). A claim reports what a peek would, and is as good: when nothing
        was due it dropped the wake-up tokens, and anything that makes a job ready since
        (enqueue, retry, reclaim, resume) pushes one, which the blocking pop then finds."""
        hints = []
        now = time.monotonic()
        for q in queues:
            found = self._idle.pop(q, None)  # once: a later wait asks afresh
            if found is None or now - found[0] > _HINT_AGE:
                return None
            paused, due, wait = found[1]
            if wait:  # seconds from the claim, not from now
                wait = max(0.0, float(wait) - (now - found[0]))
                due = due or not wait
            hints.append((paused, due, wait))
        return hints

    def _new_wire(self) -> _Wire:
        # On a cluster: a node's own connection; a PUBLISH reaches every node.
        return _Wire(self._node_url, self._safe, self._call_timeout)

    def _watch(self, job_id: str, sub: tuple[_Wire, asyncio.Queue[Any]]) -> None:
        watched = self._watched
        if len(watched) >= _WHERE_CAP:
            for old in list(watched)[: _WHERE_CAP // 2]:
                del watched[old]
        watched[job_id] = sub

    async def wait_finished(self, ids: Collection[str], timeout: float) -> list[Job]:
        wanted = set(ids)
        if not wanted:
            return []
        # Records published while a call waited for other ids: finished, so final.
        done = [self._recent.pop(i) for i in wanted if i in self._recent]
        if done:
            for job in done:
                self._watched.pop(job.id, None)
            return done
        async with self._sub_lock:
            messages = await self._subscribed() if timeout > 0 else None
            # Subscribed first, then looked (and the unfinished watched): a finish in
            # between is still heard. Jobs watched at enqueue while this subscription was
            # up need no look: their finish is published to it.
            todo = [i for i in wanted if messages is None or self._watched.get(i) is not self._sub]
            if todo:
                done = await self._fetch(todo, "2" if messages is not None else "1")
                if done or messages is None:
                    return done
            assert messages is not None
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        item = await messages.get()
                        if isinstance(item, Exception):
                            raise item
                        if item[0] != b"message":
                            continue
                        for job in self._parse_published(item[2]):
                            self._watched.pop(job.id, None)  # finished: nothing to watch
                            if job.id in wanted:
                                done.append(job)
                            else:
                                self._keep_recent(job)
                        # Also on a miss: the caller may wait for new ids by now.
                        return done
            except TimeoutError:
                for i in wanted:  # the next call looks again, as a poll would
                    self._watched.pop(i, None)
                return []
            except BaseException:
                # A broken subscription (server restart): start a fresh one next time,
                # and look at every id again (its finish may have gone unheard).
                sub, self._sub = self._sub, None
                self._watched.clear()
                if sub is not None:
                    await sub[0].close()
                raise

    def _keep_recent(self, job: Job) -> None:
        recent = self._recent
        if len(recent) >= 1000:
            del recent[next(iter(recent))]
        recent[job.id] = job

    def _parse_published(self, raw: bytes) -> list[Job]:
        """Records as notify_finished (redis_lua/_prelude.lua) writes them."""
        jobs = []
        pos, end = 0, len(raw)
        while pos < end:
            colon = raw.index(b":", pos)
            count = int(raw[pos:colon])
            pos = colon + 1
            strings = []
            for _ in range(count):
                colon = raw.index(b":", pos)
                size = int(raw[pos:colon])
                pos = colon + 1
                strings.append(raw[pos : pos + size])
                pos += size
            try:
                job = self._job([strings[0], strings[1], strings[2:]])
            except _UNDECODABLE:
                job = _salvage([strings[0], strings[1], strings[2:]])[0]
            self._remember(job.id, job.queue)
            jobs.append(job)
        return jobs

    async def _subscribed(self) -> asyncio.Queue[Any]:
        if self._sub is None:
            self._conn()
            wire = self._new_wire()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            try:
                proto = await wire.connect()
                proto.push = queue.put_nowait
                await wire.call("SUBSCRIBE", self._g + "finished")
            except BaseException:
                await wire.close()
                raise
            self._sub = (wire, queue)
            self._watched.clear()
        return self._sub[1]

    async def _fetch(self, ids: Iterable[str], mode: str = "0") -> list[Job]:
        """Records of ``ids``; mode as in redis_lua/fetch.lua."""
        by_queue: dict[str, list[str]] = {}
        unknown = []
        for job_id in ids:
            queue = self._where.get(job_id)
            if queue is None:
                unknown.append(job_id)
            else:
                by_queue.setdefault(queue, [mode]).append(job_id)
        targets = list(by_queue.items())
        if unknown:  # looked for in every queue, each in its own slot, all in one round trip
            targets += [(q, [mode, *unknown]) for q in await self._queues()]
        if not targets:
            return []
        calls = [("fetch", self._q(q), args) for q, args in targets]
        jobs: list[Job] = []
        for (q, args), reply in zip(targets, await self._call_many(calls), strict=True):
            found = await self._jobs(self._q(q), reply)
            if args is not by_queue.get(q):
                for job in found:
                    self._remember(job.id, q)
            jobs.extend(found)
        return jobs

    async def _jobs(self, qk: str, recs: list[Any]) -> list[Job]:
        """Decode records of one queue; one that does not decode is quarantined."""
        jobs = []
        for rec in recs:
            try:
                jobs.append(self._job(rec))
            except _UNDECODABLE:
                jobs.append(await self._quarantine(qk, rec))
        return jobs

    async def _quarantine(self, qk: str, rec: list[Any]) -> Job:
        job, bad = _salvage(rec)
        if not bad or _quarantined(job.error):
            return job  # quarantined before: the data field keeps its raw bytes
        reason = "; ".join(f"{_LABELS.get(f, f.decode())}: {why}" for f, why in bad.items())
        # Only JSON fields wrong: keep their bytes; a broken hash: keep every field's.
        fields = [] if any(f not in _JSON_NAMES for f in bad) else list(bad)
        after = await self._call("quarantine", qk, rec[0], reason, *fields)
        if not after:
            return job
        return _salvage(after)[0]

    @staticmethod
    def _job(rec: list[Any]) -> Job:
        flat = rec[2]
        h: dict[bytes, bytes] = dict(zip(flat[::2], flat[1::2], strict=True))
        lease_exp = h.get(b"x")
        return Job(
            id=rec[0].decode(),
            task=h[b"t"].decode(),
            queue=h[b"q"].decode(),
            state=JobState(rec[1].decode()),
            data=_json(h.get(b"d")),
            priority=int(h.get(b"p", 0)),
            attempts=int(h.get(b"a", 0)),
            max_attempts=int(h.get(b"m", 1)),
            created_at=to_datetime(float(h[b"c"])),  # type: ignore[arg-type]
            run_at=to_datetime(float(h[b"r"])),  # type: ignore[arg-type]
            started_at=to_datetime(_float(h.get(b"st"))),
            finished_at=to_datetime(_float(h.get(b"f"))),
            progress=_json(h.get(b"pg")),
            result=_json(h.get(b"res")),
            error=_json(h.get(b"e")),
            logs=_json(h.get(b"lg")) or [],
            timeout=_float(h.get(b"to")),
            worker=_text(h.get(b"w")),
            lease_expires_at=to_datetime(_float(lease_exp)),
            dedup_key=_text(h.get(b"k")),
            keep_for=_float(h.get(b"kf")),
            stalls=int(h.get(b"sl", 0)),
            max_stalls=int(h.get(b"ms", MAX_STALLS)),
        )

    # -- inspecting and controlling ----------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        found = await self._fetch([job_id])
        return found[0] if found else None

    async def query(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        if limit <= 0 or task == "":  # the script reads '' as "any task"; no task has it
            return []
        queues = [queue] if queue is not None else await self._queues()
        if not queues:
            return []
        st = "" if state is None else JobState(state).value
        one = len(queues) == 1
        # Across queues: the newest offset+limit of each, merged, then the page cut out.
        args = (st, task or "", offset if one else 0, limit if one else offset + limit)
        replies = await self._call_many([("query", self._q(q), args) for q in queues])
        jobs = [
            job
            for q, reply in zip(queues, replies, strict=True)
            for job in await self._jobs(self._q(q), reply)
        ]
        if one:
            return jobs
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return jobs[offset : offset + limit]

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        names = list(queues) if queues is not None else await self._queues()
        if not names:
            return {}
        replies = await self._call_many([("counts", self._q(q), ()) for q in names])
        out: dict[str, dict[str, int]] = {}
        for q, reply in zip(names, replies, strict=True):
            row: dict[str, int] = dict(zip(_COUNT_STATES, (int(n) for n in reply), strict=True))
            if queues is None and not any(row.values()):
                continue  # a queue whose jobs are all gone, as if never used
            out[q] = row
        return out

    async def _queue_of(self, job_id: str) -> str | None:
        queue = self._where.get(job_id)
        if queue is None:
            if not await self._fetch([job_id]):
                return None
            queue = self._where.get(job_id)
        return queue

    async def cancel(self, job_id: str) -> JobState | None:
        queue = await self._queue_of(job_id)
        if queue is None:
            return None
        state = await self._call("cancel", self._q(queue), job_id)
        return None if not state else JobState(state.decode())

    async def release(self, ids: Collection[str]) -> None:
        for job_id in ids:
            queue = await self._queue_of(job_id)
            if queue is not None:
                await self._call("release", self._q(queue), job_id)

    async def retry(self, job_id: str) -> bool:
        queue = await self._queue_of(job_id)
        if queue is None:
            return False
        return bool(await self._call("retry", self._q(queue), job_id))

    async def purge(
        self,
        *,
        states: Collection[JobState],
        older_than: float | None = None,
        keep_last: int | None = None,
        queue: str | None = None,
        retention: bool = False,
    ) -> int:
        if older_than is None and keep_last is None and not retention:
            return 0
        queues = [queue] if queue is not None else await self._queues()
        total = 0
        keep = "" if keep_last is None else keep_last
        for st in sorted(set(states) & FINISHED_STATES):
            # keep_last counts per queue, so one script per queue reads and deletes at once.
            calls = [
                ("purge", self._q(q), (st.value, _num(older_than), keep, "1" if retention else ""))
                for q in queues
            ]
            if calls:
                total += sum(await self._call_many(calls))
        return total

    async def pause(self, queue: str) -> None:
        await self._list_queues([queue])
        await self._call("pause", self._q(queue), "1")

    async def resume(self, queue: str) -> None:
        await self._call("pause", self._q(queue), "0")

    async def paused(self) -> set[str]:
        queues = await self._queues()
        flags = await self._conn().many([("EXISTS", self._q(q) + "paused") for q in queues])
        return {q for q, flag in zip(queues, flags, strict=True) if flag}

    # -- coordination ------------------------------------------------------------------
    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        px = "" if ttl is None else max(1, round(ttl * 1000))
        return bool(await self._call("kv", "", "setnx", key, value, px))

    async def kv_get(self, key: str) -> str | None:
        raw = await self._conn().call("GET", self._g + "kv:" + key)
        return None if raw is None else raw.decode()

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        px = "" if ttl is None else max(1, round(ttl * 1000))
        await self._call("kv", "", "set", key, value, px)

    async def kv_delete(self, key: str, value: str | None = None) -> bool:
        only = "0" if value is None else "1"
        return bool(await self._call("kv", "", "delete", key, only, value or ""))

    async def kv_extend(self, held: Mapping[str, str], ttl: float) -> set[str]:
        if not held:
            return set()
        pairs = [part for item in held.items() for part in item]
        flags = await self._call("kv", "", "extend", max(1, round(ttl * 1000)), *pairs)
        return {key for key, flag in zip(held, flags, strict=True) if flag}

    async def kv_scan(self, prefix: str) -> dict[str, str]:
        flat = await self._call("kv", "", "scan", prefix, once=False)
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    async def counter_add(self, key: str, n: int, ttl: float | None = None) -> int:
        px = "" if ttl is None else max(1, round(ttl * 1000))
        return int(await self._call("counter", "", self._g + "n:" + key, n, px))

    # -- events and workers ------------------------------------------------------------
    async def publish(self, events: Sequence[Event]) -> None:
        args: list[Any] = []
        for ev in events:
            args.extend(
                (
                    ev.type,
                    ev.job_id or "",
                    ev.task or "",
                    ev.queue or "",
                    codec.dumps(ev.data),
                    repr(float(ev.at)) if ev.at else "",
                )
            )
        if args:
            await self._call("publish", "", *args)

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        """The streams merged: {P}:events and each queue's {P:Q}:events, by entry id.

        Only entries older than the server's current millisecond are returned (the
        horizon, read before the streams): a later XADD gets an id at or past it, so a
        reader whose cursor passed an id never misses an event written after it. Entries
        of different streams may share an id (the same millisecond and sequence); a page
        never splits them, so the cursor stays exact."""
        if limit <= 0:
            return []
        streams = [self._g + "events", *(self._q(q) + "events" for q in await self._queues())]
        ms, seq = divmod(max(0, int(after)), 1_000_000)
        reads = [("XRANGE", s, f"({ms}-{seq}", "+", "COUNT", limit) for s in streams]
        horizon, replies = await self._conn().read_after_time(reads)
        merged: list[tuple[int, int, Any]] = []
        for n, entries in enumerate(replies):
            if isinstance(entries, Exception):
                raise entries
            for entry_id, flat in entries:
                cursor = _cursor(entry_id)
                if cursor // 1_000_000 >= horizon:
                    break
                merged.append((cursor, n, flat))
        merged.sort(key=lambda m: (m[0], m[1]))
        if len(merged) > limit:
            cut = limit
            while cut > 0 and merged[cut - 1][0] == merged[limit][0]:
                cut -= 1  # the last id continues past the page: leave it whole for the next
            if cut == 0:  # one id holds more than a page: it goes out whole
                while cut < len(merged) and merged[cut][0] == merged[0][0]:
                    cut += 1
            merged = merged[:cut]
        out = []
        for cursor, _, flat in merged:
            f = dict(zip(flat[::2], flat[1::2], strict=True))
            out.append(
                Event(
                    f[b"e"].decode(),
                    f[b"j"].decode() or None,
                    f[b"t"].decode() or None,
                    f[b"q"].decode() or None,
                    codec.loads(f[b"d"]),
                    float(f[b"a"]),
                    cursor,
                )
            )
        return out

    async def beat(self, info: WorkerInfo, ttl: float) -> None:
        record = codec.dumps(
            {
                "host": info.host,
                "pid": info.pid,
                "queues": info.queues,
                "started_at": info.started_at,
                "active": info.active,
                "processed": info.processed,
                "ttl": ttl,
            }
        )
        now = await self._call("beat", "", info.id, record, repr(float(ttl)))
        info.last_seen = float(now)

    async def workers(self) -> list[WorkerInfo]:
        reply = await self._call("workers", "")
        out = []
        for i in range(1, len(reply), 3):
            rec = codec.loads(reply[i + 2])
            out.append(
                WorkerInfo(
                    reply[i].decode(),
                    rec["host"],
                    rec["pid"],
                    rec["queues"],
                    rec["started_at"],
                    rec["active"],
                    rec["processed"],
                    float(reply[i + 1]) - float(rec["ttl"]),
                )
            )
        return out

    async def remove_worker(self, worker_id: str) -> None:
        await self._conn().many(
            [("HDEL", self._g + "workers", worker_id), ("ZREM", self._g + "workers:exp", worker_id)]
        )
