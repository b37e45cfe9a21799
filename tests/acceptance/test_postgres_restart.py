"""A worker survives its PostgreSQL server: a restart, and every connection killed.

The test starts a private cluster (PrivatePostgres of tests/chaos/servers.py: initdb in a
temp dir, fsync=off, a free port, its socket in the temp dir) from the machine's binaries;
as root it runs as the ``postgres`` user through runuser. Under CI=true a missing binary
fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.chaos.servers import MissingBinary, PrivatePostgres
from tests.conftest import IN_CI
from workhorse import Workhorse
from workhorse.errors import BackendError

pytest.importorskip("psycopg_pool")
import psycopg

from workhorse.backends.postgres import PostgresBackend

pytestmark = pytest.mark.slow

POLL = 5.0  # the workers' poll: a pickup much faster than this came through LISTEN
PROMPT = 2.0
RECOVERY = 15.0  # generous on a loaded 2-core machine; the measured figure is printed


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    try:
        pg = PrivatePostgres()
    except MissingBinary as exc:
        if IN_CI:
            pytest.fail(f"{exc}; CI=true: a missing binary fails the run")
        pytest.skip(str(exc))
    try:
        pg.start()
        yield pg
    finally:
        pg.cleanup()


async def touch(data: Any) -> Any:
    return data


@pytest.fixture
async def apps(cluster: PrivatePostgres) -> AsyncIterator[tuple[Workhorse, Workhorse]]:
    """A worker's app and a producer's app, each with its own pool and listener."""
    url = f"{cluster.url}?schema=restart"
    worker_app = Workhorse(url, poll_interval=POLL)
    client = Workhorse(url, poll_interval=POLL)
    for a in (worker_app, client):
        a.add_task(touch, name="touch")
    await client.open()
    yield worker_app, client
    await client.close()
    await worker_app.close()


async def _retrying(what: str, call: Any) -> Any:
    """The producer's own pool also lost its connections: retry like an application would."""
    deadline = time.monotonic() + RECOVERY
    while True:
        try:
            return await call()
        except BackendError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never succeeded after the outage") from None
            await asyncio.sleep(0.1)


async def _listening_again(backend: PostgresBackend, connects: int) -> None:
    while backend.listener.connects <= connects or not backend.listener.connected.is_set():
        await asyncio.sleep(0.02)


async def _outage_survived(
    worker_app: Workhorse, client: Workhorse, outage: Any, label: str
) -> None:
    worker = worker_app.worker(queues=["default"], poll_interval=POLL)
    running = asyncio.create_task(worker.run())
    try:
        assert await client.run("touch", 0, timeout=10) == 0
        backend = worker_app.backend
        assert isinstance(backend, PostgresBackend)
        connects = backend.listener.connects

        started = time.monotonic()
        await outage()
        handle = await _retrying("enqueue", lambda: client.enqueue("touch", 1))
        job = await client.wait(handle.id, timeout=RECOVERY + 5)
        recovered = time.monotonic() - started
        assert job.state.value == "completed"
        assert not running.done(), "the worker stopped instead of reconnecting"

        # LISTEN is back on the worker's side: a new job is picked up far faster than the
        # poll interval, so the wake-up came from NOTIFY.
        async with asyncio.timeout(RECOVERY):
            await _listening_again(backend, connects)
        await asyncio.sleep(0.3)  # let the worker settle into its wait
        t = time.monotonic()
        assert await client.run("touch", 2, timeout=10) == 2
        pickup = time.monotonic() - t
        print(f"\n{label}: first job done {recovered:.2f}s after the outage began; "
              f"then a run() took {pickup * 1000:.0f} ms (poll interval {POLL:g}s)")  # fmt: skip
        assert recovered < RECOVERY
        assert pickup < PROMPT
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)


async def test_worker_carries_on_after_a_server_restart(
    cluster: PrivatePostgres, apps: tuple[Workhorse, Workhorse]
) -> None:
    worker_app, client = apps

    async def restart() -> None:
        await asyncio.to_thread(cluster.restart)

    await _outage_survived(worker_app, client, restart, "server restart")


async def test_worker_carries_on_after_every_connection_is_killed(
    cluster: PrivatePostgres, apps: tuple[Workhorse, Workhorse]
) -> None:
    worker_app, client = apps

    async def kill_all() -> None:
        async with await psycopg.AsyncConnection.connect(cluster.url, autocommit=True) as c:
            cur = await c.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            row = await cur.fetchone()
            # Two pools and two LISTEN connections at least.
            assert row is not None and row[0] >= 4

    await _outage_survived(worker_app, client, kill_all, "all connections killed")
