"""The Redis backend's plumbing beneath the contract methods: URL options, connections, the
epoch check, script calls by SHA, and reading job records (quarantining those that do not
decode)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from workhorse.backends.base import Backend
from workhorse.backends.redis.cluster import SCHEMES as CLUSTER_SCHEMES
from workhorse.backends.redis.cluster import ClusterAddress, ClusterWire, parse_cluster_netloc
from workhorse.backends.redis.records import (
    UNDECODABLE,
    decode_job,
    quarantine_args,
    quarantined,
    salvage,
)
from workhorse.backends.redis.scripts import (
    ONCE,
    Library,
    load_library,
    load_script_texts,
    script_texts,
)
from workhorse.backends.redis.wire import (
    CALL_TIMEOUT,
    NoScript,
    Packed,
    ReplyError,
    Unreachable,
    Wire,
    cert_reqs,
    parse_address,
)
from workhorse.errors import BackendError, BackendUnavailable, ConfigError
from workhorse.events import HOLD_FACTOR, HOLD_PREFIX
from workhorse.job import Job
from workhorse.urls import check_options, redact

log = logging.getLogger("workhorse.redis")

_OUR_PARAMS = {"prefix", "max_events", "call_timeout"}
# Seconds between looks for hook groups holding the event log.
HOLD_LOOK = 10.0
_WIRE_PARAMS = {"db"}  # read by the connection itself
_TLS_PARAMS = {"ssl_ca_certs", "ssl_cert_reqs"}  # rediss:// only
_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
WHERE_CAP = 100_000  # ids whose queue this client remembers (it enqueued them)
_MIN_VERSION = (6, 2)  # XRANGE with an exclusive start, float BLPOP timeouts
_FUNCTIONS_FROM = (7, 0)  # FUNCTION LOAD and FCALL


class RedisCore(Backend):
    """The state every part of the Redis backend shares, and its plumbing; the contract
    methods are in RedisBackend (backend.py) and its waits in RedisWaiting (waiting.py)."""

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
        cert_reqs(dict(params).get("ssl_cert_reqs"))
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
        # The cap each XADD trims its stream to: HOLD_FACTOR times max_events while a hook
        # group holds the log (then sweep() trims below the groups' floors).
        self._event_cap = self._max_events
        self._floors: list[int] = []
        self._hold_seen = -HOLD_LOOK
        self._hold_look: asyncio.Task[None] | None = None
        self._last_sweep = 0.0
        try:
            # A half-open connection answers nothing: give a call up after this long.
            self._call_timeout = float(ours.get("call_timeout", CALL_TIMEOUT))
        except ValueError:
            raise ConfigError("call_timeout in the Redis URL must be seconds") from None
        self.prefix = prefix
        self._g = f"{{{prefix}}}:"
        self._client_url = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in params if k not in _OUR_PARAMS]))
        )
        self._safe = redact(url)
        if self._cluster is None:
            parse_address(self._client_url, self._safe)  # a bad port or db is refused here
        self._head = ""  # the scripts' first line (scripts.load_script_texts)
        self._scripts = load_script_texts()
        # The Function library some scripts are called from (scripts.FUNCTIONS), when the
        # server takes one (standalone Redis 7+); None: every script by EVALSHA.
        self._library: Library | None = None
        self._wire: Wire | ClusterWire | None = None
        self._node_url = self._client_url  # where subscriptions and blocked pops connect
        self._idle_blockers: list[Wire] = []  # connections for BLPOP, one per waiter
        self._sub: tuple[Wire, asyncio.Queue[Any]] | None = None  # the 'finished' channel
        self._sub_lock = asyncio.Lock()
        self._epoch: bytes | None = None
        self._where: dict[str, str] = {}  # job id -> queue, for the jobs this client knows
        self._recent: dict[str, Job] = {}  # finished records heard while waiting for others
        # job id -> the subscription that was up when enqueue() watched the job
        self._watched: dict[str, tuple[Wire, asyncio.Queue[Any]]] = {}
        self._qk: dict[str, str] = {}  # queue -> its key prefix
        self._listed: set[str] = set()  # queues this client put in {P}:queues
        # queue -> (when, [paused, due, wait]) after its last claim
        self._idle: dict[str, tuple[float, list[Any]]] = {}
        self._taking_up: set[asyncio.Future[Any]] = set()  # wait_claim's renews in flight
        self._epoch_due = 0.0  # wait_for_jobs checks the epoch mark again after this
        self._ids = os.urandom(8).hex() + "."  # call ids: this prefix and a sequence
        self._seq = itertools.count()
        self._records: dict[str, bytes] = {}  # queue's key prefix -> its call ids' prefix
        # enqueue's packed pieces (backend.py): (queue, watch) -> (argument count, the
        # call's head in RESP); a task's options -> their part of a job's arguments
        self._heads: dict[tuple[str, str], tuple[int, bytes]] = {}
        # a one-job call's RESP up to the job's own arguments, per queue and task options
        self._singles: dict[tuple[Any, ...], bytes] = {}
        self._task_parts: dict[tuple[Any, ...], bytes] = {}

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
            cluster7 = isinstance(wire, ClusterWire) and version >= (7, 0)
            self._head = "#!lua\n" if cluster7 else ""
            self._scripts = load_script_texts(self._head)
            self._library = None
            self._repack()
            if isinstance(wire, ClusterWire):
                assert self._cluster is not None
                self._node_url = self._cluster.node_url(*await wire.first_node())
            await self._load_scripts(wire)
            if not isinstance(wire, ClusterWire) and version >= _FUNCTIONS_FROM:
                await self._use_library(wire)
            await self._check_eviction(wire)
            self._epoch = await self._read_epoch(wire)
        except Unreachable as exc:
            await wire.close()
            raise BackendUnavailable(str(exc)) from exc
        except (OSError, TimeoutError) as exc:  # BackendUnavailable is an OSError
            await wire.close()
            raise BackendUnavailable(
                f"cannot reach Redis at {self._safe}: {exc}. Check that the server runs, "
                "and the URL's host, port, database and password"
            ) from exc
        except BaseException:
            await wire.close()
            raise
        self._wire = wire
        await self._look_for_holds(now=True)

    async def close(self) -> None:
        if self._hold_look is not None:
            self._hold_look.cancel()
            self._hold_look = None
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

    def _make_wire(self) -> Wire | ClusterWire:
        if self._cluster is not None:
            return ClusterWire(self._cluster, self._safe, self._call_timeout)
        return Wire(self._client_url, self._safe, self._call_timeout)

    async def server_info(self) -> dict[str, Any]:
        """For ``workhorse check``: the mode, and the server's version or the cluster's
        primaries with their versions and slots."""
        wire = self._conn()
        if isinstance(wire, ClusterWire):
            return {"redis_mode": "cluster", "redis_nodes": await wire.nodes()}
        info = (await wire.call("INFO", "server")).decode()
        found = re.search(r"redis_version:(\S+)", info)
        return {"redis_mode": "standalone", "redis_version": found[1] if found else "?"}

    def _conn(self) -> Wire | ClusterWire:
        if self._wire is None:
            raise BackendError(f"the Redis backend for {self._safe} is not open; call open()")
        return self._wire

    async def _use_library(self, wire: Wire | ClusterWire) -> None:
        """Call scripts.FUNCTIONS by FCALL if the server loads their library; a server that
        refuses it (an ACL without FUNCTION, a Redis-compatible server without Functions)
        keeps EVALSHA for all."""
        library = load_library()
        try:
            await wire.call("FUNCTION", "LOAD", "REPLACE", library.text)
        except ReplyError as exc:
            log.info("Redis at %s did not load the function library (%s): scripts only",
                     self._safe, exc)  # fmt: skip
            return
        self._library = library
        for name, function in library.functions.items():
            self._scripts[name].use_function(function)
        self._repack()

    def _repack(self) -> None:
        """Forget enqueue's packed pieces (they carry the verb, the script and the cap)."""
        self._heads.clear()
        self._singles.clear()

    async def _load_scripts(self, wire: Wire | ClusterWire) -> None:
        scripts = list(self._scripts.values())
        texts = script_texts(self._head)
        loads: list[tuple[Any, ...]] = [("SCRIPT", "LOAD", texts[s.name]) for s in scripts]
        if self._library is not None:  # after a restart without persistence, FUNCTION FLUSH
            loads.append(("FUNCTION", "LOAD", "REPLACE", self._library.text))
        replies = await wire.many(loads)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        for script, sha in zip(scripts, replies, strict=False):
            script.sha = sha.decode()
            if script.verb == "EVALSHA":
                script.ref = script.sha

    async def _check_eviction(self, wire: Wire | ClusterWire) -> None:
        try:
            reply = await wire.call("CONFIG", "GET", "maxmemory-policy")
        except ReplyError:  # CONFIG is often disabled on managed servers
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

    async def _read_epoch(self, wire: Wire | ClusterWire) -> bytes:
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
        """The EVALSHA (or FCALL) of a script call; one that must not run twice names its
        call record (KEYS[2], in the same slot) with an id of its own."""
        script = self._scripts[name]
        if once and name in ONCE:
            prefix = self._records.get(qk)
            if prefix is None:
                prefix = self._records[qk] = f"{qk or self._g}call:{self._ids}".encode()
            record = prefix + b"%d" % next(self._seq)
            return (script.verb, script.ref, 2, self._slot(qk), record, qk, self._g,
                    self._event_cap, *args)  # fmt: skip
        return (script.verb, script.ref, 1, self._slot(qk), qk, self._g, self._event_cap, *args)

    async def _look_for_holds(self, now: bool = False) -> None:
        """Every HOLD_LOOK seconds, read the hook groups' floors (one kv scan): every
        process that writes events must stop trimming below them, producers included."""
        if not now and time.monotonic() - self._hold_seen < HOLD_LOOK:
            return
        self._hold_seen = time.monotonic()
        try:
            flat = await self._conn().call(*self._eval("kvscan", "", (HOLD_PREFIX,)))
        except Exception:
            return  # the call that follows meets the same trouble and reports it
        self._floors = [int(flat[i + 1]) for i in range(0, len(flat), 2)]
        cap = self._max_events * (HOLD_FACTOR if self._floors else 1)
        if cap != self._event_cap:
            self._repack()  # enqueue's packed calls carry the cap: pack them anew
        self._event_cap = cap

    def _refresh_holds(self) -> None:
        """Read the floors again beside the caller's call, not before it: a look that
        waited (or timed out) in front of every HOLD_LOOK-th call would add its round trip
        and its failures to a caller's (read at open; a new hold is seen within HOLD_LOOK)."""
        self._hold_seen = time.monotonic()
        if self._hold_look is None or self._hold_look.done():
            self._hold_look = asyncio.ensure_future(self._look_for_holds(now=True))

    async def _call(self, name: str, qk: str, *args: Any, once: bool = True) -> Any:
        if time.monotonic() - self._hold_seen >= HOLD_LOOK:  # checked here: a hot path
            self._refresh_holds()
        wire = self._conn()
        call = self._eval(name, qk, args, once)
        try:
            return await wire.call(*call)
        except NoScript:
            # The server restarted or its script cache was flushed: load them again.
            await self._load_scripts(wire)
            return await wire.call(*call)

    async def _call_many(self, calls: Sequence[tuple[str, str, Sequence[Any]]]) -> list[Any]:
        """Several script calls in one pipelined round trip; each is atomic on its own."""
        if len(calls) == 1:
            name, qk, args = calls[0]
            return [await self._call(name, qk, *args)]
        if time.monotonic() - self._hold_seen >= HOLD_LOOK:  # checked here: a hot path
            self._refresh_holds()
        wire = self._conn()
        results: list[Any] = [None] * len(calls)
        evals = [self._eval(*c) for c in calls]
        todo = list(range(len(calls)))
        for attempt in range(2):
            replies = await wire.many([evals[i] for i in todo])
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScript) and attempt == 0:
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

    async def _call_packed(self, commands: Iterator[Packed]) -> list[Any]:
        """Script calls already in RESP, pipelined (standalone Redis only), as _call_many:
        an error reply is raised; a call that met a lost script cache never ran, and is
        sent again once the scripts are loaded. Each call is written as soon as the
        iterator makes it (Wire.many)."""
        if time.monotonic() - self._hold_seen >= HOLD_LOOK:  # as _call: a producer learns
            self._refresh_holds()  # of hook groups' holds though it only ever enqueues
        wire = self._conn()
        assert isinstance(wire, Wire)
        made: list[Packed] = []
        replies = await wire.many(_kept(commands, made))
        results: list[Any] = [None] * len(made)
        todo = list(range(len(made)))
        for attempt in range(2):
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScript) and attempt == 0:
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                break
            await self._load_scripts(wire)
            todo = missing
            replies = await wire.many([made[i] for i in todo])
        return results

    def _remember(self, job_id: str, queue: str) -> None:
        self._room(1)[job_id] = queue

    def _room(self, n: int) -> dict[str, str]:
        """The job-to-queue map, its oldest half let go first if ``n`` more would pass
        its cap."""
        where = self._where
        if len(where) + n > WHERE_CAP:
            for old in list(where)[: WHERE_CAP // 2]:
                del where[old]
        return where

    async def now(self) -> float:
        sec, usec = await self._conn().call("TIME")
        return int(sec) + int(usec) / 1_000_000

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

    async def _fetch(self, ids: Iterable[str], mode: str = "0") -> list[Job]:
        """Records of ``ids``; mode as in lua/fetch.lua ('2': lua/watch.lua)."""
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
        # fetch writes nothing ('no-writes' on a cluster): it answers at maxmemory.
        script = "watch" if mode == "2" else "fetch"
        calls = [(script, self._q(q), args) for q, args in targets]
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
                jobs.append(decode_job(rec))
            except UNDECODABLE:
                jobs.append(await self._quarantine(qk, rec))
        return jobs

    async def _quarantine(self, qk: str, rec: list[Any]) -> Job:
        job, bad = salvage(rec)
        if not bad or quarantined(job.error):
            return job  # quarantined before: the data field keeps its raw bytes
        reason, fields = quarantine_args(bad)
        after = await self._call("quarantine", qk, rec[0], reason, *fields)
        if not after:
            return job
        return salvage(after)[0]


def _kept(commands: Iterator[Packed], made: list[Packed]) -> Iterator[Packed]:
    """``commands`` as they are made, each also kept in ``made`` (to send again)."""
    for command in commands:
        made.append(command)
        yield command
