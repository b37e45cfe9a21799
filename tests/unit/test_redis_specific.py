"""What only the Redis backend has: its key layout, its URL, script reloading, the capped
event log, blocking waits, and the warnings it gives at open. Real servers only: the
shared one on 6379 (a private key prefix per test) or a private redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.acceptance.test_redis_restart import PrivateRedis
from tests.conftest import REDIS_URL, require_service
from tests.contract.support import completed, settled_log
from workhorse import Workhorse, codec
from workhorse.backends import Claim
from workhorse.errors import BackendError, ConfigError
from workhorse.job import Event, JobState, NewJob, WorkerInfo, new_job_id

pytest.importorskip("redis")
import redis.asyncio as aioredis

from workhorse.backends.redis import RedisBackend
from workhorse.backends.redis.wire import ReplyError, _pack, bulk


def _job(queue: str = "q", delay: float = 0.0) -> NewJob:
    return NewJob(new_job_id(), "t", queue, codec.dumps({}), delay=delay)


@pytest.fixture
async def backend() -> AsyncIterator[RedisBackend]:
    require_service("redis", "127.0.0.1", 6379)
    b = RedisBackend(f"{REDIS_URL}?prefix=whu{uuid.uuid4().hex[:12]}")
    await b.open()
    try:
        yield b
    finally:
        await b.drop()
        await b.close()


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield r
    finally:
        await r.aclose()


@pytest.fixture
def private() -> Iterator[PrivateRedis]:
    srv = PrivateRedis()
    try:
        yield srv
    finally:
        srv.cleanup()


async def _keys(r: aioredis.Redis, prefix: str) -> set[str]:
    found = set()
    for pattern in (f"{{{prefix}}}:*", f"{{{prefix}:*"):
        found |= {k.decode() async for k in r.scan_iter(match=pattern, count=1000)}
    return found


async def test_keys_carry_one_hash_tag_per_queue(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    p = backend.prefix
    (res,) = await backend.enqueue([_job("mail")])
    await backend.enqueue([_job("img")])
    keys = await _keys(raw, p)
    assert f"{{{p}:mail}}:j:{res.id}" in keys
    # The job events are in their queue's stream, and the dedup keys in their queue's slot.
    assert {f"{{{p}:mail}}:ready", f"{{{p}:img}}:ready", f"{{{p}:mail}}:events"} <= keys
    assert f"{{{p}}}:events" not in keys
    for key in keys:
        tag = key[1 : key.index("}")]
        assert tag in (p, f"{p}:mail", f"{p}:img"), key
    # Nothing is written outside the prefix, and drop() removes all of it.
    await backend.drop()
    assert await _keys(raw, p) == set()


async def test_drop_leaves_other_prefixes_alone(backend: RedisBackend) -> None:
    other = RedisBackend(f"{REDIS_URL}?prefix={backend.prefix}x")
    await other.open()
    try:
        (res,) = await other.enqueue([_job()])
        await backend.enqueue([_job()])
        await backend.drop()
        assert await other.get(res.id) is not None
    finally:
        await other.drop()
        await other.close()


def test_url_prefix_is_checked() -> None:
    with pytest.raises(ConfigError, match="key prefix"):
        RedisBackend("redis://127.0.0.1:6379/0?prefix=a}b")
    with pytest.raises(ConfigError, match="max_events"):
        RedisBackend("redis://127.0.0.1:6379/0?max_events=many")


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "redis://h:7000/3",
        "redis://h:7000/3?db=5",
        "redis://h:7000/3?db=5&db=6&db=",
        "redis://h/",
        "redis://:p%40ss@h:1/2",
        "redis://us%3Aer:pw@[::1]:6380/1",
        "rediss://u:pw@h:6380/0?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem",
    ],
)
def test_urls_are_read_as_redis_py_reads_them(url: str) -> None:
    from redis.asyncio.connection import parse_url

    from workhorse.backends.redis.wire import parse_address

    theirs = {k: v for k, v in parse_url(url).items() if k != "connection_class"}
    assert parse_address(url, "safe") == theirs


def test_a_bad_port_or_database_is_refused_at_construction() -> None:
    for url in ("redis://h:99999/0", "redis://h:port/0", "redis://h/0?db=x"):
        with pytest.raises(ConfigError, match="cannot read the Redis URL"):
            RedisBackend(url)


async def test_unreachable_server_names_the_url_without_its_password() -> None:
    b = RedisBackend("redis://:s3cret@127.0.0.1:1/0?prefix=x")
    with pytest.raises(BackendError) as caught:
        await b.open()
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message
    assert "Check that the server runs" in message
    await b.close()


async def test_open_and_close_are_idempotent() -> None:
    require_service("redis", "127.0.0.1", 6379)
    b = RedisBackend(f"{REDIS_URL}?prefix=whu{uuid.uuid4().hex[:12]}")
    await b.open()
    await b.open()
    assert await b.now() > 0
    await b.drop()
    await b.close()
    await b.close()


async def test_scripts_are_loaded_again_after_the_server_forgot_them(
    private: PrivateRedis,
) -> None:
    private.start()
    b = RedisBackend(f"redis://127.0.0.1:{private.port}/0?prefix=p")
    await b.open()
    try:
        await b.enqueue([_job()])
        r = aioredis.Redis(port=private.port)
        await r.script_flush()
        # One call alone, and several pipelined: both fall back to loading the scripts.
        (res,) = await b.enqueue([_job()])
        assert res.created
        assert (await b.counts(["q", "other"]))["q"]["queued"] == 2
        await r.script_flush()
        # Three chunks, each written as it is packed: every one met the lost cache.
        results = await b.enqueue([_job() for _ in range(600)])
        assert all(x.created and x.state is JobState.QUEUED for x in results)
        assert (await b.counts(["q"]))["q"]["queued"] == 602
        await r.aclose()
    finally:
        await b.close()


async def _calls(r: aioredis.Redis) -> dict[str, int]:
    """Calls per command since the server's last CONFIG RESETSTAT (INFO commandstats)."""
    stats = await r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def _functions_server(private: PrivateRedis) -> tuple[aioredis.Redis, RedisBackend]:
    """A private Redis 7+ (skipped on an older one) and an open backend on it."""
    private.start()
    r = aioredis.Redis(port=private.port)
    if int((await r.info("server"))["redis_version"].split(".")[0]) < 7:
        await r.aclose()
        pytest.skip("Redis Functions need Redis 7")
    b = RedisBackend(f"redis://127.0.0.1:{private.port}/0?prefix=p")
    await b.open()
    return r, b


async def test_enqueue_is_a_function_call_and_comes_back_after_function_flush(
    private: PrivateRedis,
) -> None:
    # Redis 7+: enqueue is called from the Function library (FCALL), whose prelude is built
    # once at load instead of on every call (the worker's scripts too: the next test). A server that
    # lost the library (FUNCTION FLUSH, or a restart without persistence: FLUSHALL keeps
    # it) answers "Function not found", and the call is sent again once it is loaded.
    r, b = await _functions_server(private)
    try:
        await r.config_resetstat()
        await b.enqueue([_job()])
        await b.enqueue([_job() for _ in range(3)])
        calls = await _calls(r)
        assert calls.get("fcall") == 2 and "evalsha" not in calls
        await r.execute_command("FUNCTION", "FLUSH")
        (res,) = await b.enqueue([_job()])
        assert res.created
        await r.execute_command("FUNCTION", "FLUSH")
        results = await b.enqueue([_job() for _ in range(600)])  # three chunks, pipelined
        assert all(x.created and x.state is JobState.QUEUED for x in results)
        await r.flushall()
        await b.drop()
        (res,) = await b.enqueue([_job()])
        assert res.created and (await b.counts(["q"]))["q"]["queued"] == 1
    finally:
        await b.close()
        await r.aclose()


async def test_a_start_is_one_function_call_and_comes_back_after_function_flush(
    private: PrivateRedis,
) -> None:
    # A run's start (enqueue_claimed_with: keys, events, counters and claimed jobs) is one
    # FCALL on Redis 7+; a server that lost the library answers "Function not found"
    # before running any of it, and the start is sent again once the library is loaded.
    r, b = await _functions_server(private)

    async def start(run: str) -> Any:
        job = _job()
        ((won, res),) = await b.enqueue_claimed_with(
            [(Claim(f"idx:{job.id}", "m"), job)],
            {f"run:{run}": "record"},
            [Event("flow.started", data={"run": run})],
            [(f"n:{run}", 1, None)],
        )
        return won and res is not None and res.created

    try:
        assert await start("r0")  # the queue listed
        await r.config_resetstat()
        assert await start("r1")
        calls = await _calls(r)
        assert calls.get("fcall") == 1 and "evalsha" not in calls
        await r.execute_command("FUNCTION", "FLUSH")
        assert await start("r2")
        assert await b.kv_get("run:r2") == "record"
        assert await b.counter_add("n:r2", 0) == 1
        assert (await b.counts(["q"]))["q"]["queued"] == 3
    finally:
        await b.close()
        await r.aclose()


async def test_a_workers_calls_are_function_calls_and_come_back_after_function_flush(
    private: PrivateRedis,
) -> None:
    # Redis 7+: a worker's calls (peek, the claim behind a blocked pop, renew, progress,
    # finish, publish, counters, beat, reclaim) are FCALLs, no EVALSHA. After a
    # FUNCTION FLUSH each call is answered "Function not found" without running, and is
    # sent again once the library is loaded; the pop's pipelined claim never ran, so the
    # wait answers None (claim next) and no job is left leased.
    r, b = await _functions_server(private)
    try:
        await b.enqueue([_job()])  # the queue listed
        await b.wait_claim("q", "w1", 1, 30.0, 0.01)  # a claim's idle hint, then a peek
        await r.config_resetstat()
        (lease,) = await b.claim(["q"], "w1", 1, 30.0)
        assert not (await b.renew([lease])).lost
        assert await b.update(lease, progress=50)
        assert await b.finish([(lease, completed(1))]) == [True]
        await b.publish([Event("app.ping", data={})])
        assert await b.counter_add("n", 1) == 1
        await b.beat(WorkerInfo("w1", "h", 1, {"q": 1}, time.time()), 30.0)
        assert await b.reclaim_expired() == []
        calls = await _calls(r)
        assert "evalsha" not in calls and calls.get("fcall", 0) >= 9, calls
        # A job's read stays a script (test_reads_still_answer_at_maxmemory).
        assert (await b.get(lease.job_id)).state is JobState.COMPLETED  # type: ignore[union-attr]
        assert (await _calls(r)).get("evalsha") == 1
        await r.execute_command("FUNCTION", "FLUSH")
        await b.enqueue([_job()])
        await r.execute_command("FUNCTION", "FLUSH")
        (lease,) = await b.claim(["q"], "w1", 1, 30.0)
        await r.execute_command("FUNCTION", "FLUSH")
        assert await b.finish([(lease, completed(2))]) == [True]
        b._idle.clear()  # no idle hint: the wait peeks, finds the queue empty and blocks
        waiting = asyncio.ensure_future(b.wait_claim("q", "w1", 1, 30.0, 5.0))
        await asyncio.sleep(0.2)
        await r.execute_command("FUNCTION", "FLUSH")
        await r.rpush("{p:q}:wake", "1")  # the pop ends, its claim meets no library
        assert await waiting is None
        assert await r.execute_command("FUNCTION", "LIST")  # loaded again
        await b.enqueue([_job()])
        (lease,) = await b.claim(["q"], "w1", 1, 30.0)
        assert await b.finish([(lease, completed(3))]) == [True]
    finally:
        await b.close()
        await r.aclose()


async def test_reads_still_answer_at_maxmemory(private: PrivateRedis) -> None:
    # At maxmemory a function that may write is refused before it runs, where a script is
    # refused at its first write: the idle worker's peek (a 'no-writes' function) and a
    # job's read (fetch, a script) answer as they did, and only the claim is refused.
    private.start()
    r = aioredis.Redis(port=private.port)
    b = RedisBackend(f"redis://127.0.0.1:{private.port}/0?prefix=p")
    await b.open()
    try:
        (res,) = await b.enqueue([_job()])
        await r.set("ballast", b"x" * 2_000_000)
        await r.config_set("maxmemory", "1mb")
        b._idle.clear()  # no idle hint: the wait peeks
        assert await b.wait_claim("q", "w1", 1, 30.0, 1.0) is None  # a job is due
        assert (await b.get(res.id)).state is JobState.QUEUED  # type: ignore[union-attr]
        with pytest.raises(ReplyError, match="OOM"):
            await b.claim(["q"], "w1", 1, 30.0)
    finally:
        await r.config_set("maxmemory", "0")
        await b.close()
        await r.aclose()


async def test_a_server_that_refuses_the_function_library_gets_scripts(
    private: PrivateRedis,
) -> None:
    # A user whose ACL allows scripts but not FUNCTION (or a Redis-compatible server
    # without Functions): the backend calls every script by EVALSHA, enqueue included.
    private.start()
    r = aioredis.Redis(port=private.port)
    await r.execute_command("ACL", "SETUSER", "nofn", "on", ">pw", "~*", "&*", "+@all",
                            "-function")  # fmt: skip
    b = RedisBackend(f"redis://nofn:pw@127.0.0.1:{private.port}/0?prefix=p")
    await b.open()
    try:
        await r.config_resetstat()
        (res,) = await b.enqueue([_job()])
        assert res.created and (await b.counts(["q"]))["q"]["queued"] == 1
        calls = await _calls(r)
        assert "fcall" not in calls and calls.get("evalsha", 0) >= 2
        await r.script_flush()  # and the scripts come back as before
        results = await b.enqueue([_job() for _ in range(300)])
        assert all(x.created for x in results)
        assert (await b.counts(["q"]))["q"]["queued"] == 301
    finally:
        await b.close()
        await r.aclose()


async def test_concurrent_producers_share_script_calls(private: PrivateRedis) -> None:
    # 100 coroutines enqueueing one job at a time (a web server's handlers): the callers
    # one script call answered go together in the next. Taking the free lanes one by one
    # as they resumed, they made ~79 calls for these 2,000 jobs, 3 in 4 of one job.
    private.start()
    r = aioredis.Redis(port=private.port)
    b = RedisBackend(f"redis://127.0.0.1:{private.port}/0?prefix=p")
    await b.open()
    try:
        await b.enqueue([_job()])

        async def producer() -> None:
            for _ in range(20):
                (res,) = await b.enqueue([_job()])
                assert res.created

        await r.config_resetstat()
        await asyncio.gather(*(producer() for _ in range(100)))
        calls = await _calls(r)
        # Shared: 2,000 jobs in a few dozen calls (42-53 seen, more under load), not one each.
        assert calls.get("fcall", 0) + calls.get("evalsha", 0) <= 100
        assert (await b.counts(["q"]))["q"]["queued"] == 2001
    finally:
        await b.close()
        await r.aclose()


async def test_a_one_job_call_is_packed_as_a_batch_of_one(backend: RedisBackend) -> None:
    # The one-job enqueue packs its call from a cached start: byte for byte the batch's
    # (plain, id and payload alone, for the first: due now without a dedup key).
    jobs = [
        _job(),
        _job(delay=2.5),
        NewJob(new_job_id(), "t", "q", b'{"a":1}', priority=-3, at=time.time() + 9),
        NewJob(new_job_id(), "u", "q", b"null", dedup_key="k", replace=True, timeout=4.0),
        NewJob(new_job_id(), "t", "r", b"[]", lease=7.0, keep_for=60.0, hold=True),
    ]
    for new in [*jobs, *jobs]:  # the second time from the cache
        assert backend._pack_one(new) == backend._pack_enqueue(new.queue, "0", (new,))
    assert backend._pack_one(jobs[0]).count(b"\r\n$1\r\np\r\n") == 1


async def test_a_bulk_job_is_stored_as_a_lone_one_and_leaves_no_other_key(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    # Calls of several jobs write records through a template they delete, and send plain
    # jobs (id and payload): the same keys, fields and values as a job enqueued alone.
    p = backend.prefix
    (lone,) = await backend.enqueue([_job()])
    layout = {k for k in await _keys(raw, p) if ":j:" not in k}
    many = await backend.enqueue([_job() for _ in range(10)])
    assert {k for k in await _keys(raw, p) if ":j:" not in k} == layout
    own = ("c", "r", "ev", "rk")  # the call's time, the job's event and ready key

    async def record(job_id: str) -> dict[bytes, bytes]:
        fields = await raw.hgetall(f"{{{p}:q}}:j:{job_id}")
        return {k: v for k, v in fields.items() if k.decode() not in own}

    expected = await record(lone.id)
    assert len(expected) == 7  # no timeout, lease or max_stalls of its own: not written
    for res in many:
        assert await record(res.id) == expected


async def test_a_record_leaves_out_the_options_readers_default_and_reads_an_older_one(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    # No timeout, lease or max_stalls of its own: a new record has no 'to', 'l' or 'ms'
    # (each field costs the enqueue ~2.5k server instructions), alone, in a batch and when
    # scheduled; given, they are written. A record main wrote ('', '' and '3') reads the same.
    key = f"{{{backend.prefix}:q}}:j:"
    plain = [_job(), *(_job() for _ in range(5)), _job(delay=60.0)]
    opts = NewJob(new_job_id(), "t", "q", b"{}", timeout=4.0, lease=7.0, max_stalls=5)
    old = _job()
    for batch in ([plain[0]], plain[1:6], [plain[6]], [opts], [old]):
        await backend.enqueue(batch)
    for new in plain:
        assert not {b"to", b"l", b"ms"} & set(await raw.hkeys(key + new.id))
    assert await raw.hmget(key + opts.id, "to", "l", "ms") == [b"4.0", b"7.0", b"5"]
    await raw.hset(key + old.id, mapping={"to": "", "l": "", "ms": "3"})
    got = {j.id: j for j in await backend.get_many([plain[0].id, opts.id, old.id])}
    for job in (got[plain[0].id], got[old.id]):
        assert (job.timeout, job.max_stalls) == (None, 3)
    assert (got[opts.id].timeout, got[opts.id].max_stalls) == (4.0, 5)
    leases = {lease.job_id: lease for lease in await backend.claim(["q"], "w1", 10, 30.0)}
    assert (leases[plain[0].id].timeout, leases[plain[0].id].lease) == (None, 30.0)
    assert (leases[old.id].timeout, leases[old.id].lease) == (None, 30.0)
    assert (leases[opts.id].timeout, leases[opts.id].lease) == (4.0, 7.0)


async def test_the_lease_indexes_turn_skiplists_holding_only_the_claimed_jobs(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    # A listpack sorted set inserts by parsing every score before the new member (a third
    # of a flow step's server time): claim converts 'active' and 'i:active' once they hold
    # 16 members, through a member it removes again, also when it claims one job at a time.
    p = backend.prefix
    keys = [f"{{{p}:q}}:active", f"{{{p}:q}}:i:active"]
    await backend.enqueue([_job() for _ in range(40)])
    leases = [lease for _ in range(15) for lease in await backend.claim(["q"], "w1", 1, 30.0)]
    for key in keys:  # small sets stay listpacks: converting each would cost more
        assert await raw.object("encoding", key) == b"listpack"
    leases += await backend.claim(["q"], "w1", 1, 30.0)
    for key in keys:
        assert await raw.object("encoding", key) == b"skiplist"
        assert {m.decode() for m in await raw.zrange(key, 0, -1)} == {
            lease.job_id for lease in leases
        }
    assert await backend.finish([(lease, completed(1)) for lease in leases]) == [True] * 16
    assert not await raw.exists(*keys)
    # The sets went with their last member; a claim of 16 at once makes them skiplists.
    leases = await backend.claim(["q"], "w1", 16, 30.0)
    for key in keys:
        assert await raw.object("encoding", key) == b"skiplist"
        assert await raw.zcard(key) == 16


async def test_a_short_queues_indexes_turn_skiplists_holding_only_its_jobs(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    # The indexes whose scores grow (creation, finish times) and that stay small in steady
    # state ('i:queued' of a queue a worker keeps up with, 'all', 'i:completed' and
    # 'f:completed' of a store with few kept jobs): enqueue and finish convert them once
    # they hold 16 members, one job per call, as claim does the lease indexes.
    p = backend.prefix
    queued, listed = f"{{{p}:q}}:i:queued", f"{{{p}:q}}:all"
    done = [f"{{{p}:q}}:i:completed", f"{{{p}:q}}:f:completed"]
    ids = [(await backend.enqueue([_job()]))[0].id for _ in range(15)]
    for key in (queued, listed):  # small sets stay listpacks: converting each would cost more
        assert await raw.object("encoding", key) == b"listpack"
    ids += [(await backend.enqueue([_job()]))[0].id]
    for key in (queued, listed):
        assert await raw.object("encoding", key) == b"skiplist"
        assert {m.decode() for m in await raw.zrange(key, 0, -1)} == set(ids)
    leases = await backend.claim(["q"], "w1", 16, 30.0)
    for lease in leases[:15]:
        assert await backend.finish([(lease, completed(1))]) == [True]
    for key in done:
        assert await raw.object("encoding", key) == b"listpack"
    assert await backend.finish([(leases[15], completed(1))]) == [True]
    for key in done:
        assert await raw.object("encoding", key) == b"skiplist"
        assert {m.decode() for m in await raw.zrange(key, 0, -1)} == set(ids)
    # Listed as before, newest first, without the member that converted them.
    jobs = await backend.query(queue="q", state=JobState.COMPLETED, limit=100)
    assert [j.id for j in jobs] == ids[::-1]
    assert (await backend.counts(["q"]))["q"]["completed"] == 16


async def test_event_log_is_capped_and_ids_keep_rising() -> None:
    require_service("redis", "127.0.0.1", 6379)
    b = RedisBackend(f"{REDIS_URL}?prefix=whu{uuid.uuid4().hex[:12]}&max_events=100")
    await b.open()
    try:
        for _ in range(10):
            await b.publish([Event("x.happened", data={"n": i}) for i in range(100)])
        # Read once the log settled: the current millisecond shows a moment later.
        events = [*await settled_log(b), *(await b.events(after=0, limit=5000))[-1:]]
        assert len(events) < 400  # MAXLEN ~ trims whole nodes: about the cap, never all
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert len(await b.events(after=0, limit=5000)) == len(events)
        assert [e.id for e in await b.events(after=ids[-3])] == ids[-2:]
    finally:
        await b.drop()
        await b.close()


async def test_a_bulk_enqueue_keeps_the_queue_stream_capped(raw: aioredis.Redis) -> None:
    # A call of several jobs trims its queue's stream once, after its last entry.
    require_service("redis", "127.0.0.1", 6379)
    b = RedisBackend(f"{REDIS_URL}?prefix=whu{uuid.uuid4().hex[:12]}&max_events=100")
    await b.open()
    try:
        for _ in range(3):
            await b.enqueue([_job() for _ in range(600)])
        size = await raw.xlen(f"{{{b.prefix}:q}}:events")
        assert 100 <= size < 400  # MAXLEN ~ trims whole nodes: about the cap
        assert (await b.counts(["q"]))["q"]["queued"] == 1800
    finally:
        await b.drop()
        await b.close()


async def test_a_runs_event_stream_goes_once_the_log_dropped_its_events(
    raw: aioredis.Redis,
) -> None:
    require_service("redis", "127.0.0.1", 6379)
    prefix = f"whu{uuid.uuid4().hex[:12]}"
    b = RedisBackend(f"{REDIS_URL}?prefix={prefix}&max_events=100")
    await b.open()
    try:
        await b.publish([Event("step.completed", data={"run": "old", "n": n}) for n in range(3)])
        assert await raw.exists(f"{{{prefix}}}:rev:old") == 1
        await asyncio.sleep(0.01)  # a later millisecond than the run's events
        for _ in range(10):
            await b.publish([Event("x.happened", data={"n": i}) for i in range(100)])
        await b.publish([Event("flow.started", data={"run": "new"})])
        # The log kept about its cap, none of the old run's: its stream went with them.
        assert not [e for e in await settled_log(b) if e.data.get("run") == "old"]
        assert await raw.exists(f"{{{prefix}}}:rev:old") == 0
        assert await raw.zscore(f"{{{prefix}}}:revs", "old") is None
        assert await b.run_events("old") == []
        assert [e.type for e in await b.run_events("new")] == ["flow.started"]
    finally:
        await b.drop()
        await b.close()


async def test_wait_for_jobs_blocks_until_an_enqueue(backend: RedisBackend) -> None:
    peer = RedisBackend(backend.url)
    await peer.open()
    try:
        t0 = time.monotonic()
        await backend.wait_for_jobs(["q"], 0.3)
        assert time.monotonic() - t0 >= 0.25  # nothing came: it waited

        async def later() -> None:
            await asyncio.sleep(0.2)
            await peer.enqueue([_job()])

        t0 = time.monotonic()
        await asyncio.gather(backend.wait_for_jobs(["q"], 5.0), later())
        assert time.monotonic() - t0 < 1.5  # woken by the enqueue, not the timeout
    finally:
        await peer.close()


async def test_wait_for_jobs_is_bounded_by_the_next_due_job(backend: RedisBackend) -> None:
    await backend.enqueue([_job(delay=0.4)])
    t0 = time.monotonic()
    waits = 0
    # As a worker does: claim, and wait when nothing came (the enqueue's own wake-up
    # token ends the first wait at once).
    while not await backend.claim(["q"], "w", 10, 30.0):
        assert waits < 4, "woke up without a due job too often: a busy poll?"
        await backend.wait_for_jobs(["q"], 5.0)
        waits += 1
    took = time.monotonic() - t0
    assert 0.3 <= took < 2.0  # the due time ended the wait, not the 5 s timeout


async def test_eviction_policy_that_can_lose_jobs_is_warned_about(
    private: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    private.start()
    r = aioredis.Redis(port=private.port)
    await r.config_set("maxmemory-policy", "allkeys-lru")
    await r.aclose()
    b = RedisBackend(f"redis://127.0.0.1:{private.port}/0")
    with caplog.at_level(logging.WARNING, "workhorse.redis"):
        await b.open()
    await b.close()
    assert any("allkeys-lru" in r.getMessage() and "noeviction" in r.getMessage()
               for r in caplog.records)  # fmt: skip


async def test_a_safe_eviction_policy_is_not_warned_about(
    backend: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    peer = RedisBackend(backend.url)
    with caplog.at_level(logging.WARNING, "workhorse.redis"):
        await peer.open()
    await peer.close()
    assert not [r for r in caplog.records if r.name == "workhorse.redis"]


def test_call_timeout_comes_from_the_url() -> None:
    from workhorse.backends.redis import RedisBackend

    assert RedisBackend("redis://127.0.0.1:6379/0?call_timeout=2.5")._call_timeout == 2.5
    with pytest.raises(ConfigError, match="call_timeout"):
        RedisBackend("redis://127.0.0.1:6379/0?call_timeout=soon")


async def test_a_wait_right_after_an_empty_claim_still_sees_a_later_enqueue(
    backend: RedisBackend,
) -> None:
    # The wait acts on what the empty claim found instead of peeking again: a job enqueued
    # by another client in between must still end it (its wake-up token does).
    peer = RedisBackend(backend.url)
    await peer.open()
    try:
        assert await backend.claim(["q"], "w", 10, 30.0) == []
        await peer.enqueue([_job()])
        await asyncio.wait_for(backend.wait_for_jobs(["q"], 30.0), 10)
        assert len(await backend.claim(["q"], "w", 10, 30.0)) == 1
    finally:
        await peer.close()


@contextlib.asynccontextmanager
async def _watched(backend: RedisBackend) -> AsyncIterator[tuple[RedisBackend, Any]]:
    """A second client (a worker process's), and a job enqueued by ``run()`` with the
    caller's subscription up."""
    worker = RedisBackend(backend.url)
    await worker.open()
    try:
        assert await backend.wait_finished(["nothing-yet"], 0.05) == []  # subscribes
        (result,) = await backend.enqueue_watched([_job()])
        yield worker, result
    finally:
        await worker.close()


async def test_a_job_enqueued_by_run_is_watched_and_its_result_published(
    backend: RedisBackend,
) -> None:
    # app.run() enqueues with enqueue_watched: with the subscription up the job is watched
    # in the same script call and the wait skips its own look. The finish, by another client
    # (a worker process), must then be published to this one.
    async with _watched(backend) as (worker, result):
        (lease,) = await worker.claim(["q"], "w", 10, 30.0)
        assert await worker.finish([(lease, completed({"n": 1}))]) == [True]
        (job,) = await backend.wait_finished([result.id], 10.0)
        assert (job.id, job.state, job.result) == (result.id, JobState.COMPLETED, {"n": 1})


async def test_a_caller_whose_finish_message_was_lost_gets_the_result_on_its_next_look(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    # The published record is a watched job's only news: a lost one (here never sent, its
    # watch mark gone) ends that wait empty, and the next wait looks the job up instead.
    async with _watched(backend) as (worker, result):
        assert await raw.srem(f"{{{backend.prefix}:q}}:watch", result.id) == 1
        (lease,) = await worker.claim(["q"], "w", 10, 30.0)
        assert await worker.finish([(lease, completed(5))]) == [True]
        assert await backend.wait_finished([result.id], 0.2) == []
        (job,) = await backend.wait_finished([result.id], 10.0)
        assert (job.id, job.state, job.result) == (result.id, JobState.COMPLETED, 5)


async def test_a_call_that_repeats_a_stored_id_answers_that_job_and_creates_the_rest(
    backend: RedisBackend,
) -> None:
    # As a call resent after a lost reply does: its jobs' ids are in the store already,
    # here one of them claimed since. The script must look at each job, not write over it.
    first = _job()
    await backend.enqueue([first])
    (lease,) = await backend.claim(["q"], "w", 1, 30.0)
    results = await backend.enqueue([first, _job(), _job(delay=60)])
    assert (results[0].id, results[0].created, results[0].state) == (
        first.id,
        True,
        JobState.ACTIVE,
    )
    assert [(r.created, r.state) for r in results[1:]] == [
        (True, JobState.QUEUED),
        (True, JobState.SCHEDULED),
    ]
    counts = (await backend.counts(["q"]))["q"]
    assert (counts["queued"], counts["scheduled"], counts["active"]) == (1, 1, 1)
    job = await backend.get(first.id)
    assert job is not None and (job.state, job.attempts) == (JobState.ACTIVE, 1)
    assert len([e for e in await settled_log(backend) if e.type == "job.queued"]) == 3
    assert lease.job_id == first.id


async def test_a_resent_bulk_call_answers_its_stored_jobs_and_writes_only_the_new_ones(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    # A bulk call of plain jobs takes a loop of its own when none of its jobs is stored
    # (enqueue_jobs in _prelude.lua); resent after a lost reply, with one job claimed since
    # and one new, it must take the checks per job: nothing written twice or over a job.
    p = backend.prefix
    sent = [_job() for _ in range(6)]
    assert [r.state for r in await backend.enqueue(sent)] == [JobState.QUEUED] * 6
    before = {new.id: await raw.hgetall(f"{{{p}:q}}:j:{new.id}") for new in sent}
    for new in sent:  # the job's own fields, not the template's placeholders
        rec = before[new.id]
        assert rec[b"rk"].endswith(new.id.encode()) and rec[b"d"] == new.data
        assert await raw.xrange(f"{{{p}:q}}:events", rec[b"ev"], rec[b"ev"])
    (lease,) = await backend.claim(["q"], "w", 1, 30.0)
    again = await backend.enqueue([*sent, _job()])
    assert [(r.id, r.created) for r in again[:6]] == [(new.id, True) for new in sent]
    assert [r.state for r in again] == [
        JobState.ACTIVE if new.id == lease.job_id else JobState.QUEUED for new in sent
    ] + [JobState.QUEUED]
    for new in sent:
        if new.id != lease.job_id:
            assert await raw.hgetall(f"{{{p}:q}}:j:{new.id}") == before[new.id]
    counts = (await backend.counts(["q"]))["q"]
    assert (counts["queued"], counts["active"]) == (6, 1)
    assert len([e for e in await settled_log(backend) if e.type == "job.queued"]) == 7
    assert len(await backend.claim(["q"], "w", 10, 30.0)) == 6  # no ready entry twice


async def test_jobs_of_one_call_that_share_a_task_part_each_get_their_own_options(
    backend: RedisBackend,
) -> None:
    # The call sends each distinct task part once; jobs name theirs (A, B, then A again).
    a1 = NewJob(new_job_id(), "a", "q", b"1", priority=5, max_attempts=4, timeout=2.5)
    b = NewJob(new_job_id(), "b", "q", b"2", lease=9.0, max_stalls=1)
    a2 = NewJob(new_job_id(), "a", "q", b"3", priority=5, max_attempts=4, timeout=2.5)
    assert [r.created for r in await backend.enqueue([a1, b, a2])] == [True] * 3
    for sent in (a1, b, a2):
        job = await backend.get(sent.id)
        assert job is not None
        got = (job.task, job.priority, job.max_attempts, job.timeout, job.max_stalls)
        assert got == (sent.task, sent.priority, sent.max_attempts, sent.timeout, sent.max_stalls)
        assert codec.dumps(job.data) == sent.data
    leases = await backend.claim(["q"], "w", 10, 30.0)
    assert [(x.job_id, x.lease) for x in leases] == [(a1.id, 30.0), (a2.id, 30.0), (b.id, 9.0)]


def test_a_finish_writes_follow_ups_on_one_server_not_on_a_cluster() -> None:
    # A cluster's finish runs in the finishing job's slot; its follow-ups' keys are in others.
    assert RedisBackend(REDIS_URL).capabilities.finish_followups
    cluster = RedisBackend("redis+cluster://127.0.0.1:7000/")
    assert not cluster.capabilities.finish_followups
    assert not RedisBackend.capabilities.finish_followups  # the class: either kind


def _round_trips(b: RedisBackend) -> list[str]:
    """The commands (their first word) b's connection sends from now on, one entry per
    round trip (a pipeline is one); the server answers them as ever."""
    wire = b._conn()
    trips: list[str] = []
    call, many = wire.call, wire.many

    async def counted_call(*args: Any, **kwargs: Any) -> Any:
        trips.append(str(args[0]))
        return await call(*args, **kwargs)

    async def counted_many(commands: Any) -> Any:
        trips.append("pipeline")
        return await many(commands)

    wire.call, wire.many = counted_call, counted_many  # type: ignore[method-assign]
    return trips


async def test_enqueue_claimed_and_a_finish_with_follow_ups_are_one_call_each(
    backend: RedisBackend,
) -> None:
    b = backend
    await b.enqueue([_job("a"), _job("b"), _job("steps")])  # the queues listed
    (lease,) = await b.claim(["steps"], "w1", 1, 30.0)
    trips = _round_trips(b)
    jobs = [_job("a"), _job("b"), _job("a", delay=60)]
    out = await b.enqueue_claimed([(Claim(f"idx:{j.id}", "m", unless="end"), j) for j in jobs])
    assert [(won, None if res is None else res.state) for won, res in out] == [
        (True, JobState.QUEUED),
        (True, JobState.QUEUED),
        (True, JobState.SCHEDULED),
    ]
    verb = b._scripts["claimed"].verb  # FCALL on a standalone Redis 7+
    assert trips == [verb]
    outcome = completed(1)
    outcome.followups = [(Claim("idx:f1", "m", unless="end"), _job("a"))]
    assert await b.finish([(lease, outcome)]) == [True]
    assert trips == [verb, b._scripts["finish"].verb]
    assert outcome.followups_claimed is not None
    assert [won for won, _ in outcome.followups_claimed] == [True]
    counts = (await b.counts(["a"]))["a"]
    assert (counts["queued"], counts["scheduled"]) == (3, 1)


async def test_follow_ups_events_come_after_the_outcome_whose_stream_is_ahead(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    # The step's stream holds an entry 50 ms ahead of the clock (as many entries in one
    # millisecond would put its sequence ahead): a follow-up's job.queued in a quieter
    # stream must still sort after the step's job.completed in the merged log.
    await backend.enqueue([_job("steps")])
    (lease,) = await backend.claim(["steps"], "w1", 1, 30.0)
    sec, usec = await raw.time()
    ahead = (sec * 1000 + usec // 1000) + 50
    entry = {"e": "test.ahead", "j": "", "t": "", "q": "steps", "d": "null", "a": "0"}
    await raw.xadd(f"{{{backend.prefix}:steps}}:events", entry, id=f"{ahead}-5")
    outcome = completed(1)
    b = _job("q")
    outcome.followups = [(Claim(f"idx:{b.id}", "m"), b)]
    assert await backend.finish([(lease, outcome)]) == [True]
    await asyncio.sleep(0.1)  # the ahead entries fall below the log's horizon
    log = [(e.type, e.job_id) for e in await settled_log(backend) if e.job_id]
    done = log.index(("job.completed", lease.job_id))
    assert log.index(("job.queued", b.id)) > done, log


def test_commands_packed_by_hiredis_are_the_bytes_bulk_makes() -> None:
    # _pack hands tuples to hiredis (C) and falls back to bulk() for what it refuses.
    args = ("EVALSHA", "é", b"\x00\r\n", 0, -3, 2**70, 1e-07, 0.1 + 0.2, "")
    by_bulk = b"*%d\r\n" % len(args) + b"".join(map(bulk, args))
    assert _pack(args) == by_bulk
    assert _pack(list(args)) == by_bulk
    assert _pack((True, "x")) == b"*2\r\n$1\r\n1\r\n$1\r\nx\r\n"  # hiredis refuses bool


def test_a_finish_writes_step_events_on_one_server_not_on_a_cluster() -> None:
    # Published events go to {P}:events and the runs' streams: another slot than the queue's.
    assert RedisBackend(REDIS_URL).capabilities.finish_events
    cluster = RedisBackend("redis+cluster://127.0.0.1:7000/")
    assert not cluster.capabilities.finish_events
    assert not RedisBackend.capabilities.finish_events  # the class: either kind


async def test_a_run_against_an_idle_worker_is_four_script_calls(private: PrivateRedis) -> None:
    # The enqueue, the claim behind the worker's pop, the take-up of its lease and the finish
    # (its published record answers the caller): the worker then waits again with no claim
    # of its own, the pop's claim having found the queue empty (was five calls with it).
    private.start()
    r = aioredis.Redis(port=private.port)
    app = Workhorse(private.url)
    app.add_task(_noop, name="noop", queue="q")
    worker = app.worker(queues=["q"], concurrency=10)
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(3):
            await app.run("noop", timeout=10)  # the library loaded, the caller subscribed
        await r.config_resetstat()
        n = 30
        for _ in range(n):
            await app.run("noop", timeout=10)
        calls = await _calls(r)
        # A little room for the worker's own rounds (heartbeat, figures, reclaim).
        assert calls.get("fcall", 0) + calls.get("evalsha", 0) <= 4 * n + 10, calls
        assert calls.get("blpop", 0) <= n + 2, calls
    finally:
        worker.stop()
        await running
        await app.close()
        await r.aclose()


async def _noop() -> None:
    return None
