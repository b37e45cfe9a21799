"""Shared fixtures. ``backend`` runs a test on every backend; real servers only.

Under CI=true a backend whose server is missing fails the run; elsewhere it is skipped
with the reason."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from workhorse import Workhorse
from workhorse.backends import Backend, backend_from_url

if TYPE_CHECKING:
    from tests.chaos.servers import PrivateRedis

IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("WORKHORSE_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "WORKHORSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = os.environ.get(
    "WORKHORSE_TEST_BACKENDS", "memory,sqlite,redis,postgres,redis-cluster"
).split(",")

if os.environ.get("WORKHORSE_TEST_LOOP") == "uvloop":
    # The tests' own loop on uvloop, the loop `workhorse worker` runs on by default:
    # WORKHORSE_TEST_LOOP=uvloop pytest ... runs every async test on it.
    import uvloop

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], object]]:
        return {"uvloop": uvloop.new_event_loop}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service fails the run)")
    pytest.skip(message)


def _module_ready(module: str) -> bool:
    """A backend counts as written once its module imports and has its class."""
    import importlib

    from workhorse.backends import SCHEMES

    scheme = module.rsplit(".", 1)[-1]
    try:
        return hasattr(importlib.import_module(module), SCHEMES[scheme][1])
    except ImportError:
        return False


def backend_url(kind: str, tmp_path: Path, cluster_url: str | None = None) -> str:
    """A URL private to one test: its own file, key prefix or schema."""
    tag = uuid.uuid4().hex[:12]
    if kind == "redis-cluster":
        assert cluster_url is not None, "the redis_cluster fixture gives the cluster's URL"
        return f"{cluster_url}/?prefix=wht{tag}"
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'workhorse.db'}"
    if kind == "redis":
        require_service("redis", "127.0.0.1", 6379)
        return f"{REDIS_URL}?prefix=wht{tag}"
    if kind == "postgres":
        require_service("postgres", "127.0.0.1", 5432)
        return f"{POSTGRES_URL}?schema=wht{tag}"
    raise ValueError(kind)


def _kinds() -> list[object]:
    params: list[object] = []
    for kind in ("memory", "sqlite", "redis", "postgres", "redis-cluster"):
        module = f"workhorse.backends.{kind.removesuffix('-cluster')}"
        if kind not in BACKENDS:
            continue
        if not _module_ready(module):
            # Not written yet: a listed placeholder, so the gap shows in every run.
            params.append(pytest.param(kind, marks=pytest.mark.skip(f"{module} not written")))
        else:
            params.append(kind)
    return params


@pytest.fixture(params=_kinds())
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def private_redis(extra: Sequence[str] = ()) -> Iterator[PrivateRedis]:
    """A private redis-server (no persistence, ``extra`` options) for one test, for a fixture
    to yield from. Without redis-server: skipped, or a failure under CI=true."""
    from tests.chaos.servers import MissingBinary, PrivateRedis

    try:
        server = PrivateRedis(persist=False, extra=extra)
        server.start()
    except MissingBinary as exc:
        if IN_CI:
            pytest.fail(f"{exc} (CI=true: a missing server binary fails the run)")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[str]:
    """A private three-node Redis Cluster for the session (tests/chaos/servers.py); its
    URL. Without redis-server: skipped, or a failure under CI=true."""
    from tests.chaos.servers import MissingBinary, PrivateRedisCluster

    try:
        cluster = PrivateRedisCluster()
    except MissingBinary as exc:
        if IN_CI:
            pytest.fail(f"{exc} (CI=true: a missing server binary fails the run)")
        pytest.skip(str(exc))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.cleanup()


@pytest.fixture
def store_url(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL private to this test on the backend of its parameter."""
    cluster = request.getfixturevalue("redis_cluster") if backend_kind == "redis-cluster" else None
    return backend_url(backend_kind, tmp_path, cluster)


@pytest.fixture
def backend_factory(backend_kind: str, store_url: str) -> Callable[[], Backend]:
    """Make another backend object on the same store (a second process's view)."""
    url = store_url
    shared: list[Backend] = []

    def make() -> Backend:
        if backend_kind == "memory":
            if not shared:
                shared.append(backend_from_url(url))
            return shared[0]
        return backend_from_url(url)

    return make


@pytest.fixture
async def backend(backend_factory: Callable[[], Backend]) -> AsyncIterator[Backend]:
    b = backend_factory()
    await b.open()
    try:
        yield b
    finally:
        await _drop(b)
        await b.close()


async def _drop(b: Backend) -> None:
    """Durable backends remove their test data, once, while still open."""
    drop = getattr(b, "drop", None)
    if drop is not None and not getattr(b, "_test_dropped", False):
        b._test_dropped = True  # type: ignore[attr-defined]
        await drop()


@pytest.fixture
async def app(backend: Backend) -> AsyncIterator[Workhorse]:
    a = Workhorse(backend=backend, poll_interval=0.05)
    await a.open()
    yield a
    await close_and_drop(a, backend)


async def close_and_drop(app: Workhorse, backend: Backend) -> None:
    """Close the app, then drop its durable store: the app's close writes its enqueue
    counter's last counts, which a drop made before it would leave behind (each full run
    left hundreds of key prefixes in Redis db 0)."""
    await app.close()
    if getattr(backend, "drop", None) is not None:
        await backend.open()
        await _drop(backend)
