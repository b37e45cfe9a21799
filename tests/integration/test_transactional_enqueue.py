"""``connection=``: a job enqueued inside the application's PostgreSQL transaction exists
only if that transaction commits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.conftest import POSTGRES_URL, require_service
from workhorse import ConfigError, JobState, Workhorse


@pytest.fixture
async def pg_app() -> AsyncIterator[Workhorse]:
    require_service("postgres", "127.0.0.1", 5432)
    app = Workhorse(f"{POSTGRES_URL}?schema=whtx{uuid.uuid4().hex[:10]}")

    @app.task
    async def welcome(data: dict[str, str]) -> None: ...

    await app.open()
    yield app
    await app.backend.drop()  # type: ignore[attr-defined]
    await app.close()


async def test_rollback_leaves_no_job_and_commit_makes_it_claimable(pg_app: Workhorse) -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        async with conn.transaction(force_rollback=True):
            lost = await pg_app.enqueue("welcome", {"user": "a"}, connection=conn)
            assert lost.status == "created"
        assert await pg_app.get_job(lost.id) is None

        async with conn.transaction():
            kept = await pg_app.enqueue_many("welcome", [{"user": "b"}], connection=conn)
            # Not visible to others until the application's transaction commits.
            assert await pg_app.get_job(kept[0].id) is None
        job = await pg_app.get_job(kept[0].id)
        assert job is not None
        assert job.state is JobState.QUEUED
    leases = await pg_app.backend.claim(["default"], "w", 10, 30)
    assert [lease.job_id for lease in leases] == [kept[0].id]


async def test_connection_on_a_backend_without_transactions_is_refused() -> None:
    app = Workhorse("memory://")

    @app.task
    async def t() -> None: ...

    with pytest.raises(ConfigError, match=r"connection= needs .*postgresql"):
        await app.enqueue("t", connection=object())
    await app.close()
