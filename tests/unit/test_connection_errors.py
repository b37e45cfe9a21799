"""A store that cannot be reached, or refuses us, is reported with the URL (never its
password) and what to check, on every durable backend."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, POSTGRES_URL, REDIS_URL, require_service
from workhorse.backends import backend_from_url
from workhorse.errors import BackendError, BackendUnavailable

SECRET = "s3cret-pw"


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def open_error(url: str, *, reached: bool = True) -> str:
    """The error of opening ``url``; ``reached``: the server answered (and refused), so
    it is a BackendError, not a BackendUnavailable (a ConnectionError retry code catches)."""
    backend = backend_from_url(url)
    assert SECRET not in backend.url  # what logs and `workhorse status` show
    try:
        with pytest.raises(BackendError) as caught:
            await backend.open()
    finally:
        await backend.close()
    assert isinstance(caught.value, BackendUnavailable) is not reached, repr(caught.value)
    assert isinstance(caught.value, ConnectionError) is not reached
    message = str(caught.value)
    assert SECRET not in message
    return message


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
async def test_an_unused_port_names_the_url_and_what_to_check(scheme: str) -> None:
    pytest.importorskip(f"workhorse.backends.{'postgres' if scheme == 'postgresql' else scheme}")
    port = unused_port()
    query = "?connect_timeout=2" if scheme == "postgresql" else ""  # libpq's; Redis has none
    message = await open_error(f"{scheme}://user:{SECRET}@127.0.0.1:{port}/0{query}", reached=False)
    assert f"{scheme}://user:***@127.0.0.1:{port}/0" in message
    assert "Check that the server runs" in message


async def test_sqlite_names_the_file_and_what_to_check(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the folder should be
    message = await open_error(f"sqlite:///{blocker}/jobs.db")
    assert f"{blocker}/jobs.db" in message
    assert "check that the folder is writable" in message


async def test_redis_refusing_the_password_says_so() -> None:
    require_service("redis", "127.0.0.1", 6379)  # it has no password: AUTH is refused
    message = await open_error(f"redis://:{SECRET}@127.0.0.1:6379/0")
    assert "Redis at redis://:***@127.0.0.1:6379/0 refused the credentials" in message
    assert "Check the user name and password in the URL" in message


async def test_redis_refusing_the_database_number_says_so() -> None:
    require_service("redis", "127.0.0.1", 6379)
    message = await open_error(REDIS_URL.rsplit("/", 1)[0] + "/999")
    assert "refused database 999" in message
    assert "Check the database number" in message


async def test_postgres_missing_database_names_the_url() -> None:
    require_service("postgres", "127.0.0.1", 5432)
    url = POSTGRES_URL.rsplit("/", 1)[0].replace("postgres@", f"postgres:{SECRET}@")
    message = await open_error(f"{url}/no_such_db_wh")
    assert "postgresql://postgres:***@127.0.0.1:5432/no_such_db_wh" in message
    assert 'database "no_such_db_wh" does not exist' in message
    assert "Check that" in message


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own (with a password), to be stopped by the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI=true: a missing binary fails)")
        pytest.skip("redis-server is not installed")
    port = unused_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path), "--requirepass", SECRET],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port, server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(5)


async def test_redis_gone_after_open_names_the_url_on_the_next_call(
    private_redis: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, server = private_redis
    backend = backend_from_url(f"redis://:{SECRET}@127.0.0.1:{port}/0")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                await backend.open()
                break
            except BackendError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        assert await backend.get("nope") is None
        server.kill()
        server.wait(5)
        with pytest.raises(BackendUnavailable) as caught:
            await backend.get("nope")
        assert isinstance(caught.value, ConnectionError)  # what retry code catches
        message = str(caught.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in message
        assert "Check that the server runs" in message
        assert SECRET not in message
    finally:
        await backend.close()


async def test_postgres_connections_cut_after_open_raise_unavailable_then_recover() -> None:
    """A connection the server ends (a restart, a failover, an administrator) fails the
    call in flight with BackendUnavailable, naming the URL; the next call gets a new one."""
    require_service("postgres", "127.0.0.1", 5432)
    import psycopg

    name = f"whcut{uuid.uuid4().hex[:10]}"
    backend = backend_from_url(f"{POSTGRES_URL}?schema={name}&application_name={name}")
    await backend.open()
    try:
        assert await backend.get("nope") is None
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_URL, autocommit=True
        ) as admin:  # only this backend's connections: other tests share the server
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                [name],
            )
        with pytest.raises(BackendUnavailable) as caught:
            await backend.get("nope")
        assert isinstance(caught.value, ConnectionError)
        assert "terminating connection" in str(caught.value)
        assert await backend.get("nope") is None
    finally:
        await backend.drop()  # type: ignore[attr-defined]
        await backend.close()
