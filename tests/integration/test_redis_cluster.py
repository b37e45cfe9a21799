"""Redis Cluster beyond the contract suite (which runs whole on it as ``redis-cluster``):
a worker whose queues sit on different nodes, and ``workhorse check`` on a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from click.testing import CliRunner
from redis.asyncio.cluster import RedisCluster

from tests.contract.test_client import running, task
from workhorse import BackendError, Workhorse
from workhorse.cli import main


async def _queues_on_two_nodes(url: str, prefix: str) -> tuple[str, str]:
    """Two queue names whose slots ({prefix:queue}) belong to different primaries."""
    host, _, port = url.removeprefix("redis+cluster://").split(",")[0].rpartition(":")
    rc = RedisCluster(host=host, port=int(port))
    try:
        await rc.initialize()
        seen: dict[str, str] = {}
        for n in range(200):
            queue = f"q{n}"
            node = rc.get_node_from_key(f"{{{prefix}:{queue}}}:ready").name
            seen.setdefault(node, queue)
            if len(seen) == 2:
                first, second = seen.values()
                return first, second
    finally:
        await rc.aclose()
    raise AssertionError("no two queues on different nodes among 200 names")


@pytest.fixture
async def cluster_app(redis_cluster: str) -> AsyncIterator[Workhorse]:
    app = Workhorse(f"{redis_cluster}/?prefix=whc{uuid.uuid4().hex[:12]}", poll_interval=0.05)
    await app.open()
    try:
        yield app
    finally:
        await app.stop_workers()
        await app.backend.drop()  # type: ignore[attr-defined]
        await app.close()


async def test_a_worker_takes_jobs_from_queues_on_two_nodes(cluster_app: Workhorse) -> None:
    app = cluster_app
    prefix = app.backend.prefix  # type: ignore[attr-defined]
    url = app.backend._cluster  # type: ignore[attr-defined]
    first, second = await _queues_on_two_nodes(
        "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in url.nodes), prefix
    )

    @task(app, queue=first)
    async def double(data: dict[str, Any]) -> dict[str, Any]:
        return {"n": data["n"] * 2}

    @task(app, queue=second)
    async def triple(data: dict[str, Any]) -> dict[str, Any]:  # the second queue's task
        return {"n": data["n"] * 3}

    async with running(app, [first, second]):
        # Results through run(): the worker blocks on both queues' wake-up lists (one per
        # node) and the caller waits on the 'finished' channel, published on another node.
        assert await app.run("double", {"n": 1}, timeout=20) == {"n": 2}
        assert await app.run("triple", {"n": 2}, timeout=20) == {"n": 6}
        handles = [await double.enqueue({"n": i}) for i in range(5)]
        handles += [await double.options(queue=second).enqueue({"n": i}) for i in range(5, 10)]
        results = [await h.result(timeout=20) for h in handles]
    assert results == [{"n": i * 2} for i in range(10)]
    jobs = await app.jobs(queue=second)
    assert {j.queue for j in jobs} == {second} and len(jobs) == 6
    events = await app.events(limit=10_000)
    assert {e.queue for e in events if e.type == "job.completed"} == {first, second}


def test_check_reports_cluster_mode_and_nodes(redis_cluster: str) -> None:
    url = f"{redis_cluster}/?prefix=whc{uuid.uuid4().hex[:12]}"
    result = CliRunner().invoke(main, ["check", "--json", "--url", url])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["redis_mode"] == "cluster"
    ports = {addr.rpartition(":")[2] for addr in redis_cluster.split("://")[1].split(",")}
    assert {n["node"].rpartition(":")[2] for n in report["redis_nodes"]} == ports
    assert all(n["slots"] and n["version"] for n in report["redis_nodes"])


async def test_a_cluster_raises_the_standalone_connections_errors(cluster_app: Workhorse) -> None:
    """redis-py's errors do not reach the backend or its users: an error reply is a
    ReplyError (in place in a pipeline), as on one server, with redis-py's as the cause."""
    from redis.exceptions import ResponseError

    from workhorse.backends.redis import ReplyError

    backend: Any = cluster_app.backend
    key = f"{{{backend.prefix}}}:not-a-number"
    wire = backend._conn()
    await wire.call("SET", key, "x")
    with pytest.raises(ReplyError, match="not an integer") as caught:
        await wire.call("INCR", key)
    assert isinstance(caught.value.__cause__, ResponseError)
    got, value = await wire.many([("INCR", key), ("GET", key)])
    assert isinstance(got, ReplyError) and value == b"x"


async def test_closing_with_a_command_in_flight_leaves_no_connection(redis_cluster: str) -> None:
    """redis-py reconnects a closed cluster client for a command still in flight: the
    backend closes it again once that command is done, so no connection outlives it."""
    ports = {int(n.rpartition(":")[2]) for n in redis_cluster.split("//")[1].split(",")}

    def open_to_cluster() -> int:
        gc.collect()
        return sum(
            1
            for w in gc.get_objects()
            if isinstance(w, asyncio.StreamWriter)
            and not w.transport.is_closing()
            and w.get_extra_info("peername", ("", 0))[1] in ports
        )

    app = Workhorse(f"{redis_cluster}/?prefix=whc{uuid.uuid4().hex[:12]}")
    await app.open()
    wire: Any = app.backend._conn()  # type: ignore[attr-defined]
    await wire.call("PING")
    assert open_to_cluster() > 0
    blocked = asyncio.ensure_future(wire.call("BLPOP", f"whc-{uuid.uuid4().hex}", "0.3"))
    await asyncio.sleep(0.1)
    await app.close()
    # redis-py sends it again on connections it opens anew (or gives up: either way,
    # what it opened must be closed by the time the call returns).
    with contextlib.suppress(BackendError):
        await blocked
    assert open_to_cluster() == 0
