"""Redis Cluster for the Redis backend: ``redis+cluster://[user:password@]host:port[,host:port...]``.

The backend's key layout already keeps each call in one slot (see __init__.py); this module
gives it a connection with the same few methods as the standalone one (call, many,
read_after_time, close), on top of redis-py's ``RedisCluster``, which maps slots to nodes
and follows MOVED/ASK and topology changes. Replies are left raw (bytes, lists), and
redis-py's errors are turned into the standalone connection's (wire.py), so the backend
parses one shape and users see workhorse's errors. redis-py is imported on the first
cluster connection: a standalone backend never loads it (it is ~10 MB of a worker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from workhorse.backends.redis.wire import NoScript, ReplyError, error_of, out_of_memory
from workhorse.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster

SCHEMES = ("redis+cluster", "rediss+cluster")

# Commands the backend sends whose redis-py reply parsers are dropped: it reads the raw
# replies, as the standalone connection gives them.
_RAW = (
    "CONFIG GET", "DEL", "EVALSHA", "EXISTS", "GET", "HDEL", "INFO", "SADD", "SCAN",
    "SCRIPT LOAD", "SET", "SMEMBERS", "TIME", "UNLINK", "XRANGE", "ZREM", "ZREVRANGE",
)  # fmt: skip
_ON_ONE_NODE = frozenset({"INFO", "CONFIG", "TIME"})  # asked of one node, not routed by key
# redis-py takes a connection of a node's pool per command in flight and raises once the
# pool is used up: commands beyond this many wait for a free one instead.
_POOL = 100
_AT_ONCE = 64
_PRIMARIES = "primaries"  # RedisCluster.PRIMARIES: a command for every primary


def _ours(exc: BaseException, safe: str) -> BaseException:
    """redis-py's error as the standalone connection's: an error reply is a ReplyError
    (NoScript for a lost script), a lost or refused connection BackendUnavailable; the
    original stays the cause (its class name tells a transient one, see the finisher)."""
    from redis import exceptions as rx

    ours: BaseException
    if isinstance(exc, rx.NoScriptError):
        ours = NoScript(str(exc))
    elif isinstance(exc, rx.OutOfMemoryError):  # redis-py drops the reply's 'OOM'
        ours = out_of_memory(f"OOM {exc}", safe)
    elif isinstance(exc, rx.ResponseError):
        ours = error_of(ReplyError(str(exc)), safe)
    elif isinstance(exc, rx.ConnectionError | rx.TimeoutError):
        ours = BackendUnavailable(
            f"lost the Redis Cluster at {safe}: {exc}. Check that its nodes run and that the "
            "URL's seed nodes are right"
        )
    elif isinstance(exc, rx.RedisError):
        ours = BackendUnavailable(f"the Redis Cluster at {safe} failed: {exc}")
    else:
        return exc
    ours.__cause__ = exc
    return ours


@contextlib.contextmanager
def _translated(safe: str) -> Iterator[None]:
    """redis-py's errors raised inside as the standalone connection's (``_ours``)."""
    try:
        yield
    except Exception as exc:
        ours = _ours(exc, safe)
        if ours is exc:
            raise
        raise ours from exc


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool

    def node_url(self, host: str, port: int) -> str:
        """A plain URL of one node (for a subscription, which any node serves)."""
        scheme = "rediss" if self.tls else "redis"
        creds = ""
        if self.password is not None:
            creds = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return f"{scheme}://{creds}{host}:{port}/0"


def parse_cluster_netloc(scheme: str, netloc: str, path: str, safe: str) -> ClusterAddress:
    """``user:password@host:port,host:port`` of a cluster URL; the path may be '' or '/0'."""
    if path not in ("", "/", "/0"):
        raise ConfigError(
            f"a Redis Cluster has only database 0; remove {path!r} from {safe!r} "
            "(redis+cluster://host:port,host:port/?prefix=...)"
        )
    creds, _, hosts = netloc.rpartition("@")
    username = password = None
    if creds:
        user, has_password, secret = creds.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"cannot read the cluster node {item!r} in {safe!r}: list the seed nodes as "
                "host:port, separated by commas (redis+cluster://10.0.0.1:7000,10.0.0.2:7000)"
            )
        nodes.append((host.strip("[]"), int(port)))
    return ClusterAddress(tuple(nodes), username, password, scheme.startswith("rediss"))


class ClusterWire:
    """The cluster as one connection: commands are routed to the node owning their slot;
    ``many`` pipelines them per node, all nodes at once."""

    def __init__(self, address: ClusterAddress, safe: str, call_timeout: float) -> None:
        self.address = address
        self.safe = safe
        self.call_timeout = call_timeout
        self._rc: RedisCluster | None = None
        self._lock = asyncio.Lock()
        self._room = asyncio.Semaphore(_AT_ONCE)

    async def connect(self) -> RedisCluster:
        async with self._lock:
            if self._rc is not None:
                return self._rc
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            a = self.address
            rc = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in a.nodes],
                username=a.username,
                password=a.password,
                ssl=a.tls,
                socket_keepalive=True,
                socket_connect_timeout=5,
                max_connections=_POOL,
            )
            try:
                with _translated(self.safe):
                    async with asyncio.timeout(self.call_timeout):
                        await rc.initialize()
            except BaseException:
                with contextlib.suppress(Exception):
                    await rc.aclose()
                raise
            for name in _RAW:  # shared with every node's connections
                rc.response_callbacks.pop(name, None)
            self._rc = rc
            return rc

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[RedisCluster]:
        rc = self._rc or await self.connect()
        try:
            yield rc
        finally:
            # Closed while in use: redis-py reconnects a closed client for a command in
            # flight (and retries it), and those connections would outlive the wire.
            if rc is not self._rc:
                await rc.aclose()

    async def call(self, *args: Any, timeout: float | None = None) -> Any:
        name = str(args[0]).upper()
        async with self._client() as rc:
            with _translated(self.safe):
                async with self._room, asyncio.timeout(timeout or self.call_timeout):
                    if name == "SCRIPT":  # every primary keeps its own script cache
                        replies = await rc.execute_command(
                            " ".join(map(str, args[:2])), *args[2:], target_nodes=_PRIMARIES
                        )
                        if isinstance(replies, dict):
                            return next(iter(replies.values()))
                        return replies
                    if name in _ON_ONE_NODE:
                        node = rc.get_default_node()
                        return await rc.execute_command(*args, target_nodes=node)
                    return await rc.execute_command(*args)

    async def many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Replies in order, errors in place (not raised), as the standalone ``many``."""
        if any(str(c[0]).upper() in ("SCRIPT", *_ON_ONE_NODE) for c in commands):
            out = []
            for c in commands:
                try:
                    out.append(await self.call(*c))
                except ReplyError as exc:
                    out.append(exc)
            return out
        async with self._client() as rc:
            pipe = rc.pipeline()
            for c in commands:
                pipe.execute_command(*c)
            with _translated(self.safe):
                async with self._room, asyncio.timeout(self.call_timeout):
                    replies = await pipe.execute(raise_on_error=False)
        return [_ours(r, self.safe) if isinstance(r, Exception) else r for r in replies]

    async def read_after_time(self, reads: Sequence[Sequence[Any]]) -> tuple[int, list[Any]]:
        """The earliest millisecond among the primaries' clocks, then ``reads``. Each node
        stamps its own stream entries: an entry written after this moment has an id at or
        past it on any node whose clock does not step back."""
        with _translated(self.safe):
            async with self._client() as rc, self._room, asyncio.timeout(self.call_timeout):
                times = await rc.execute_command("TIME", target_nodes=_PRIMARIES)
        if not isinstance(times, dict):
            times = {"": times}
        horizon = min(int(sec) * 1000 + int(usec) // 1000 for sec, usec in times.values())
        return horizon, await self.many(reads) if reads else []

    async def node_of(self, key: str) -> tuple[str, int]:
        """The address of the primary that holds ``key``'s slot."""
        rc = self._rc or await self.connect()
        node = rc.get_node_from_key(key)
        assert node is not None
        return node.host, int(node.port)

    async def follow(self, key: str) -> None:
        """After a MOVED or ASK from a node's own connection: a routed command on ``key``
        has redis-py learn where its slot went."""
        async with self._client() as rc:
            await rc.execute_command("EXISTS", key)

    async def nodes(self) -> list[dict[str, Any]]:
        """Each primary: its address, version and slot ranges (for ``workhorse check``)."""
        rc = self._rc or await self.connect()
        ranges: dict[str, list[str]] = {}
        owners = rc.nodes_manager.slots_cache  # slot -> [primary, replicas...]
        first = 0
        for slot in range(1, 16385):
            here = owners.get(first)
            if slot == 16384 or owners.get(slot) != here:
                if here:
                    ranges.setdefault(here[0].name, []).append(f"{first}-{slot - 1}")
                first = slot
        async with self._client() as live:
            infos = await live.execute_command("INFO", "server", target_nodes=_PRIMARIES)
        out = []
        for name, info in sorted(infos.items()):
            text = info.decode() if isinstance(info, bytes) else str(info)
            version = next(
                (line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("redis_version:")),
                "?",
            )  # fmt: skip
            out.append({"node": name, "version": version, "slots": ranges.get(name, [])})
        return out

    async def scan_delete(self, patterns: Sequence[str]) -> None:
        """Delete every key matching ``patterns`` on every primary (test clean-up)."""
        async with self._client() as rc:
            for node in rc.get_primaries():
                for pattern in patterns:
                    cursor: Any = b"0"
                    while True:
                        reply = await rc.execute_command(
                            "SCAN", cursor, "MATCH", pattern, "COUNT", 1000, target_nodes=node
                        )
                        cursor, keys = reply
                        if isinstance(cursor, dict):  # redis-py's per-node cursors
                            cursor = next(iter(cursor.values()))
                        for key in keys:  # one slot per key: UNLINK them one by one
                            await rc.execute_command("UNLINK", key)
                        if cursor in (b"0", 0, "0"):
                            break

    async def first_node(self) -> tuple[str, int]:
        rc = self._rc or await self.connect()
        node = rc.get_default_node() or rc.get_primaries()[0]
        return node.host, int(node.port)

    async def close(self) -> None:
        rc, self._rc = self._rc, None
        if rc is not None:
            await rc.aclose()
