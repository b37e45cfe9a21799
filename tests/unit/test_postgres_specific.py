"""What only the PostgreSQL backend promises: migrations, the application's transaction,
LISTEN after a lost connection, indexes, URL handling. Real server on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from tests.conftest import POSTGRES_URL, require_service
from workhorse import Workhorse, codec
from workhorse.errors import BackendError, ConfigError
from workhorse.job import Event, Job, JobKey, JobState, NewJob, Outcome, new_job_id

pytest.importorskip("psycopg_pool")

from workhorse.backends.postgres import PostgresBackend, arrays
from workhorse.backends.postgres import backend as pg_backend
from workhorse.backends.postgres import schema as pg_schema

PROMPT = 2.0  # far below every wait's own timeout


def _url(schema: str, extra: str = "") -> str:
    return f"{POSTGRES_URL}?schema={schema}{extra}"


@pytest.fixture
def schema_name() -> str:
    require_service("postgres", "127.0.0.1", 5432)
    return f"whu{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make(schema_name: str) -> AsyncIterator[Callable[..., PostgresBackend]]:
    """Backends on one private schema; all closed and the schema dropped afterwards."""
    made: list[PostgresBackend] = []

    def factory(extra: str = "", **kwargs: Any) -> PostgresBackend:
        b = PostgresBackend(_url(schema_name, extra), **kwargs)
        made.append(b)
        return b

    yield factory
    for b in made:
        await b.close()
    if made:
        await made[0].drop()


def job(queue: str = "q", **kwargs: Any) -> NewJob:
    return NewJob(new_job_id(), "t", queue, codec.dumps({"n": 1}), **kwargs)


async def _catalog(schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Columns, indexes and constraints of a schema, with its name taken out."""
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        columns = await (
            await conn.execute(
                "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
                "replace(coalesce(column_default, ''), %s, 'S'), collation_name "
                "FROM information_schema.columns "
                "WHERE table_schema = %s ORDER BY 1, 3",
                (schema, schema),
            )
        ).fetchall()
        indexes = await (
            await conn.execute(
                "SELECT tablename, indexname, replace(indexdef, %s, 'S') FROM pg_indexes "
                "WHERE schemaname = %s ORDER BY 1, 2",
                (schema, schema),
            )
        ).fetchall()
        constraints = await (
            await conn.execute(
                "SELECT c.conrelid::regclass::text, c.conname, c.contype, "
                "pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s "
                "ORDER BY 2",
                (schema,),
            )
        ).fetchall()
    cons = [(r[0].replace(f"{schema}.", "S."), *r[1:]) for r in constraints]
    return {"columns": columns, "indexes": indexes, "constraints": cons}


# -- schema and migrations -------------------------------------------------------------


async def test_migrations_one_by_one_give_the_fresh_schema(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    fresh = make()
    await fresh.open()  # a missing schema is created from schema.sql
    stepped_name = schema_name + "_m"
    stepped = PostgresBackend(_url(stepped_name))
    try:
        versions = [m.version for m in pg_schema.migrations()]
        assert len(versions) >= 2, "the test needs at least two migrations to step through"
        for v in versions:
            assert await stepped.migrate(target=v) == [v]
            assert await stepped.schema_version() == v
        assert await stepped.migrate() == []  # idempotent
        a = await _catalog(schema_name)
        b = await _catalog(stepped_name)
        assert a["columns"] and a["indexes"] and a["constraints"]
        assert a == b
    finally:
        await stepped.drop()


async def test_missing_schema_is_created_at_the_latest_version(
    make: Callable[..., PostgresBackend],
) -> None:
    b = make()
    assert await b.schema_version() == 0
    await b.open()
    assert await b.schema_version() == pg_schema.latest()


async def test_open_refuses_an_old_schema_and_names_the_fix(
    make: Callable[..., PostgresBackend],
) -> None:
    old = make()
    assert await old.migrate(target=1) == [1]
    with pytest.raises(ConfigError, match="run `workhorse migrate`") as info:
        await old.open()
    assert "version 1" in str(info.value)
    assert await old.schema_version() == 1  # refusing changed nothing

    auto = make("&migrate=auto")
    await auto.open()
    assert await auto.schema_version() == pg_schema.latest()
    (res,) = await auto.enqueue([job()])
    assert res.created


async def test_constructor_flag_migrates_on_open(make: Callable[..., PostgresBackend]) -> None:
    assert await make().migrate(target=1) == [1]
    b = make(migrate=True)
    await b.open()
    assert await b.schema_version() == pg_schema.latest()


async def test_open_refuses_a_schema_newer_than_this_code(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    b = make()
    await b.migrate()
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {schema_name}.schema_migrations (version, name) VALUES (999, 'x')"
        )
    with pytest.raises(ConfigError, match="upgrade workhorse"):
        await make().open()


async def test_concurrent_migrations_apply_each_file_once(
    make: Callable[..., PostgresBackend],
) -> None:
    results = await asyncio.gather(*(make().migrate() for _ in range(3)))
    applied = sorted(v for r in results for v in r)
    assert applied == [m.version for m in pg_schema.migrations()]


async def test_migration_0010_counts_the_jobs_already_there_once(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    b = make()
    assert await b.migrate(target=9) == list(range(1, 10))
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {schema_name}.jobs (id, task, queue, state, data) VALUES "
            "('j1', 't', 'a', 'queued', '\\x7b7d'), ('j2', 't', 'a', 'completed', '\\x7b7d'), "
            "('j3', 't', 'b', 'failed', '\\x7b7d'), ('j4', 't', 'a', 'queued', '\\x7b7d')"
        )
    assert await b.migrate() == list(range(10, pg_schema.latest() + 1))  # 0010 and later
    await b.open()
    await b.enqueue([job("b")])
    counts = await b.counts(["a", "b"])
    assert [counts["a"][s] for s in (JobState.QUEUED, JobState.COMPLETED)] == [2, 1]
    assert [counts["b"][s] for s in (JobState.QUEUED, JobState.FAILED)] == [1, 1]


async def test_counts_fold_their_rows_and_stay_right(
    make: Callable[..., PostgresBackend], schema_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_backend, "_FOLD_AT", 5)
    b = make()
    await b.open()
    for _ in range(8):  # a statement each: a counter row each
        await b.enqueue([job("a"), job("b")])
    leases = await b.claim(["a"], "w", 3, 30)
    await b.finish([(lease, Outcome("completed", codec.dumps(1))) for lease in leases])

    async def pieces() -> int:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
            cur = await conn.execute(f"SELECT count(*) FROM {schema_name}.job_counts")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    assert await pieces() > 5
    first = await b.counts()
    assert await pieces() == 3  # one per (queue, state) with jobs: a queued/completed, b queued
    assert first == await b.counts()
    assert first["a"][JobState.QUEUED] == 5 and first["a"][JobState.COMPLETED] == 3
    assert first["b"][JobState.QUEUED] == 8


# -- the application's own transaction ---------------------------------------------------


async def test_enqueue_in_the_apps_transaction(make: Callable[..., PostgresBackend]) -> None:
    b = make()
    await b.open()
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        rolled = job()
        async with conn.transaction(force_rollback=True):
            (res,) = await b.enqueue_in(conn, [rolled])
            assert res.created
            # Not visible to anyone else while the transaction is open.
            assert await b.get(rolled.id) is None
        assert await b.get(rolled.id) is None
        assert await b.claim(["q"], "w", 10, 30) == []

        kept = job()
        waiter = asyncio.create_task(b.wait_for_jobs(["q"], 10.0))
        async with conn.transaction():
            await b.enqueue_in(conn, [kept])
            await asyncio.sleep(0.2)
            assert await b.claim(["q"], "w", 10, 30) == []
            assert not waiter.done(), "a worker woke before the application committed"
        started = time.monotonic()
        async with asyncio.timeout(PROMPT + 1):
            await waiter  # the NOTIFY is delivered at commit
        assert time.monotonic() - started < PROMPT
    (lease,) = await b.claim(["q"], "w", 10, 30)
    assert lease.job_id == kept.id


async def test_enqueue_in_refuses_a_sync_connection(make: Callable[..., PostgresBackend]) -> None:
    b = make()
    await b.open()
    with psycopg.connect(POSTGRES_URL) as conn, pytest.raises(TypeError, match="Async"):
        await b.enqueue_in(conn, [job()])  # type: ignore[arg-type]


async def test_events_of_a_transaction_in_flight_hold_back_later_ones(
    make: Callable[..., PostgresBackend],
) -> None:
    """A reader that saved its cursor must never skip an event that commits late."""
    b = make()
    await b.open()
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        async with conn.transaction():
            early = job()
            await b.enqueue_in(conn, [early])  # takes the lower event id
            await b.publish([Event("custom.later")])  # commits first, higher id
            assert [e.type for e in await b.events()] == []
        events = await _settled(b, 2)  # another transaction in flight on the server waits too
    assert [e.type for e in events] == ["job.queued", "custom.later"]
    assert events[0].job_id == early.id
    assert events[0].id < events[1].id


async def test_the_logs_head_is_the_newest_event_and_skips_none_in_flight(
    make: Callable[..., PostgresBackend],
) -> None:
    """A new hook group starts at the head: not before events already written, and not
    past an event of a transaction still in flight (it commits after the group started)."""
    b = make()
    await b.open()
    await b.publish([Event("custom.before")] * 2)
    settled = await _settled(b, 2)
    assert await b.events_head() == settled[-1].id
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        async with conn.transaction():
            early = job()
            await b.enqueue_in(conn, [early])  # an event in flight
            await b.publish([Event("custom.old")] * 3)  # committed, newer transactions
            head = await b.events_head()
            assert head == settled[-1].id  # not past the event in flight
        after = await _settled(b, 4, head)
    assert [e.type for e in after] == ["job.queued"] + ["custom.old"] * 3
    assert after[0].job_id == early.id


async def _settled(b: PostgresBackend, n: int, after: int = 0) -> list[Event]:
    """The first ``n`` events after ``after`` once they are readable (another test's
    transaction in flight elsewhere on the server holds readers back a moment)."""
    deadline = time.monotonic() + 10
    while len(events := await b.events(after)) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return events


async def test_a_reader_skips_no_event_an_older_transaction_committed_with_a_higher_id(
    make: Callable[..., PostgresBackend],
) -> None:
    """The defect of decisions ("PostgreSQL event reads by (xid, id)"): A takes its xid
    first, B (a newer xid) writes the lower event id and stays open, A writes the higher id
    and commits. A read then sees A's event only; paging by id moved the cursor past B's
    id, and B's event, committed after, was never read (events() nor a hook group)."""
    b = make()
    app = Workhorse(backend=b)
    await app.open()
    got: list[str | None] = []
    app.on("job.queued", lambda e: got.append(e.job_id), name="seen")
    listener = app.listener(lease=1.5, poll_interval=0.02, from_start=True)
    running = asyncio.create_task(listener.run())
    try:
        async with (
            await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn_a,
            await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn_b,
        ):
            await conn_a.execute("SELECT pg_current_xact_id()")  # A's xid is the older
            await conn_b.execute("SELECT pg_current_xact_id()")
            early, late = job(), job()
            await b.enqueue_in(conn_b, [late])  # the lower event id
            await b.enqueue_in(conn_a, [early])  # the higher one
            await conn_a.commit()
            first = await _settled(b, 1)
            assert [e.job_id for e in first] == [early.id]  # B is still in flight

            async def past_early() -> bool:
                return (await app.hooks.lag()).cursor >= first[-1].id

            await _until(lambda: early.id in got, "the hook to get A's event")
            await _until(past_early, "the group to save its cursor past A's event")
            await conn_b.commit()
        rest = await _settled(b, 1, first[-1].id)
        assert [e.job_id for e in rest] == [late.id]
        await _until(lambda: late.id in got, "the hook to get B's event")
        assert got == [early.id, late.id]
    finally:
        listener.stop()
        await asyncio.wait_for(running, 10)
        await app.close()


async def _until(probe: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await _truth(probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _truth(value: Any) -> bool:
    return bool(await value) if asyncio.iscoroutine(value) else bool(value)


async def test_the_logs_readers_walk_the_position_index_without_a_sort(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    """A page of the log is a range of the (xid, id) index, never a sort of the log (an
    output column named like the one ordered by would be sorted instead)."""
    b = make()
    await b.open()
    q = b._q  # the statements as the backend runs them
    reads = [
        (q.events, ("0", 0, 1000)),
        (q.events_head, ()),
        (q.run_events, ("r", "0", 0, 1000)),
    ]
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute("SET enable_seqscan = off")  # a small table: the plan it picks big
        for statement, params in reads:
            cur = await conn.execute(f"EXPLAIN {statement}", params)
            plan = " ".join(str(row[0]) for row in await cur.fetchall())
            assert "Sort" not in plan, plan
            assert "events_position_idx" in plan or "events_run_idx" in plan, plan


async def test_migration_0013_places_saved_cursors_so_nothing_is_skipped(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    """A hook group's cursor saved as a plain id before 0013 must neither replay the log
    nor skip an event: here event 7 (an older transaction's) sorts before event 6."""
    b = make()
    assert await b.migrate(target=12) == list(range(1, 13))
    s = schema_name
    async with (
        await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as auto,
        await psycopg.AsyncConnection.connect(POSTGRES_URL) as older,
    ):
        for i in range(1, 6):
            await auto.execute(f"INSERT INTO {s}.events (type) VALUES ('e{i}')")
        await older.execute("SELECT pg_current_xact_id()")  # takes its xid before event 6
        await auto.execute(f"INSERT INTO {s}.events (type) VALUES ('e6')")
        await older.execute(f"INSERT INTO {s}.events (type) VALUES ('e7')")
        await older.commit()
        await auto.execute(
            f"INSERT INTO {s}.kv (key, value) VALUES ('hooks:g:cursor:0', '4'), "
            "('hooks:g:cursor:1', '6'), ('hooks:g:cursor:2', '7'), ('hookhold:g', '4'), "
            "('hooks:g:meta', '{\"partitions\": 3}')"
        )
    assert 13 in await b.migrate()
    await b.open()
    assert await b.kv_get("hooks:g:meta") == '{"partitions": 3}'
    saved = [int(await b.kv_get(f"hooks:g:cursor:{p}") or "") for p in range(3)]
    hold = int(await b.kv_get("hookhold:g") or "")
    assert hold == saved[0]

    async def types(after: int, n: int = 0) -> list[str]:
        return [e.type for e in await _settled(b, n, after)]

    assert await types(0, 7) == ["e1", "e2", "e3", "e4", "e5", "e7", "e6"]
    assert await types(saved[0], 3) == ["e5", "e7", "e6"]
    assert await types(saved[1], 2) == ["e7", "e6"]  # e6 again (at least once), e7 not skipped
    assert await types(saved[2]) == []  # everything was read
    assert await types(4, 3) == ["e5", "e7", "e6"]  # a plain id given after the upgrade too


# -- wake-ups ---------------------------------------------------------------------------


async def test_listener_comes_back_after_its_connection_is_killed(
    make: Callable[..., PostgresBackend],
) -> None:
    b, peer = make(), make()
    await b.open()
    await peer.open()
    await b.wait_for_jobs(["q"], 0.05)  # a worker's first wait starts the LISTEN
    pid = await b.listener.backend_pid()
    assert pid is not None
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    async def relistened() -> None:
        while b.listener.connects < 2 or not b.listener.connected.is_set():
            await asyncio.sleep(0.02)

    async with asyncio.timeout(5):
        await relistened()
    assert await b.listener.backend_pid() not in (None, pid)

    waiting = asyncio.create_task(b.wait_for_jobs(["q"], 30.0))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    started = time.monotonic()
    await peer.enqueue([job()])
    async with asyncio.timeout(PROMPT + 1):
        await waiting
    # Far below the 30 s wait: the wake-up came from NOTIFY, not from a timeout.
    assert time.monotonic() - started < PROMPT


async def test_a_process_that_only_enqueues_listens_to_nothing(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    # Each enqueue NOTIFYs its queue; a producer that never waits must not be sent those
    # notifications itself (a wake-up of its listening server process and of its own loop
    # per job). Its first wait then listens, and hears a peer's enqueue at once.
    b = make(f"&application_name={schema_name}")
    peer = make()
    await b.open()
    await peer.open()
    for _ in range(3):
        await b.enqueue([job()])
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND query ILIKE 'LISTEN%%'",
            (schema_name,),
        )
        assert await cur.fetchone() == (0,)
    assert await b.listener.backend_pid() is None
    await b.claim(["q"], "w1", 10, 30.0)
    waiting = asyncio.create_task(b.wait_for_jobs(["q"], 30.0))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    started = time.monotonic()
    await peer.enqueue([job()])
    async with asyncio.timeout(PROMPT + 1):
        await waiting
    assert time.monotonic() - started < PROMPT
    assert await b.listener.backend_pid() is not None


async def test_a_killed_pool_connection_fails_once_then_recovers(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    # Tagged connections: only this test's pool is terminated, nobody else's.
    b = make(f"&pool_min=2&pool_max=2&application_name={schema_name}")
    await b.open()
    await b.enqueue([job()])
    listener = await b.listener.backend_pid()
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid IS DISTINCT FROM %s",
            (schema_name, listener),
        )
        assert await cur.fetchone() == (2,)
    errors: list[str] = []
    for _ in range(5):
        try:
            assert len(await b.query()) == 1
            break
        except BackendError as exc:
            errors.append(str(exc))
    assert len(errors) <= 1, f"every dead pooled connection failed a call of its own: {errors}"
    assert all("127.0.0.1" in e for e in errors)


# -- the round trip's record --------------------------------------------------------------


def _counting_reads(b: PostgresBackend) -> list[int]:
    """Count ``wait_finished``'s reads of finished rows (one element per read)."""
    reads: list[int] = []
    read = b._finished

    async def counted(ids: list[str]) -> list[Job]:
        reads.append(1)
        return await read(ids)

    b._finished = counted  # type: ignore[method-assign]
    return reads


async def _finished_while_waited(
    b: PostgresBackend, worker: PostgresBackend, new: NewJob, outcome: Outcome
) -> tuple[Job, int]:
    """Enqueue ``new`` on ``b``, wait for it there, finish it on ``worker``: the job the
    wait returned, and how many reads of finished rows the wait made."""
    reads = _counting_reads(b)
    await b.enqueue([new])
    waiting = asyncio.create_task(b.wait_finished([new.id], 30.0))
    async with asyncio.timeout(PROMPT):
        while not reads:  # the look before the wait: from here on the wait is watching
            await asyncio.sleep(0.01)
    [lease] = await worker.claim(["q"], "w1", 1, 30.0)
    assert await worker.finish([(lease, outcome)]) == [True]
    async with asyncio.timeout(PROMPT):
        [got] = await waiting
    return got, len(reads)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome("completed", codec.dumps({"total": 1.5, "name": "zoë"})),
        Outcome(
            "failed",
            error={"type": "ValueError", "message": "no", "traceback": "..."},
            logs=[{"at": 1.0, "level": "info", "message": 'é, "quoted"'}],
        ),
    ],
)
async def test_a_run_callers_job_comes_back_in_its_finish_notification(
    make: Callable[..., PostgresBackend], outcome: Outcome
) -> None:
    # A held job (run() waits for it) is answered from the record its finish sends: no
    # read of the row after the wake-up, and the same record a read gives.
    b, worker = make(), make()
    await b.open()
    await worker.open()
    data = codec.dumps({"a": [1, "ü"]})
    new = NewJob(new_job_id(), "t", "q", data, priority=3, keep_for=60.0, hold=True)
    got, reads = await _finished_while_waited(b, worker, new, outcome)
    assert reads == 1  # only the look before the wait
    assert got == await b.get(new.id)
    assert got.state is (JobState.COMPLETED if outcome.kind == "completed" else JobState.FAILED)


async def test_a_record_too_big_for_a_notification_is_read_instead(
    make: Callable[..., PostgresBackend],
) -> None:
    b, worker = make(), make()
    await b.open()
    await worker.open()
    new = job(hold=True)
    big = codec.dumps("x" * 9000)
    got, reads = await _finished_while_waited(b, worker, new, Outcome("completed", big))
    assert reads == 2  # the look before the wait, and the read after it
    assert got == await b.get(new.id)
    assert got.result == "x" * 9000


async def test_a_run_callers_first_wait_reads_no_row_of_a_job_it_enqueued_watched(
    make: Callable[..., PostgresBackend],
) -> None:
    # run() enqueues with enqueue_watched: the finishes listener hears about the job from
    # before its commit, so the wait answers from what it heard, even a finish that came
    # before the wait began, without the look at the row (one statement less per run()).
    b, worker = make(), make()
    await b.open()
    await worker.open()
    reads = _counting_reads(b)
    early, late = job(hold=True), job(hold=True)
    await b.enqueue_watched([early])
    [lease] = await worker.claim(["q"], "w1", 1, 30.0)
    assert await worker.finish([(lease, Outcome("completed", codec.dumps(1)))]) == [True]
    async with asyncio.timeout(PROMPT):
        [got] = await b.wait_finished([early.id], 30.0)
    assert got == await b.get(early.id)
    await b.enqueue_watched([late])
    waiting = asyncio.create_task(b.wait_finished([late.id], 30.0))
    await asyncio.sleep(0.05)
    [lease] = await worker.claim(["q"], "w1", 1, 30.0)
    assert await worker.finish([(lease, Outcome("completed", codec.dumps(2)))]) == [True]
    async with asyncio.timeout(PROMPT):
        [got] = await waiting
    assert got.result == 2
    assert reads == []
    # A job that is not new to the store (a dedup key's live job) is read as before.
    holder = job(dedup_key="k", hold=True)
    await b.enqueue([holder])
    [res] = await b.enqueue_watched([job(dedup_key="k", hold=True)])
    assert res.id == holder.id and not res.created
    assert await b.wait_finished([holder.id], 0) == []
    assert reads == [1]


async def test_a_wait_reads_the_rows_of_jobs_expected_before_its_listener_reconnected(
    make: Callable[..., PostgresBackend],
) -> None:
    # What the listener heard before a lost connection is not all there was: the wait after
    # it reads the row, and finds the finish the listener may have missed.
    b, worker = make(), make()
    await b.open()
    await worker.open()
    reads = _counting_reads(b)
    new = job(hold=True)
    await b.enqueue_watched([new])
    pid = await b.finishes.backend_pid()
    assert pid is not None
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    [lease] = await worker.claim(["q"], "w1", 1, 30.0)
    assert await worker.finish([(lease, Outcome("completed", codec.dumps(1)))]) == [True]
    async with asyncio.timeout(5):
        while b.finishes.connects < 2 or not b.finishes.connected.is_set():
            await asyncio.sleep(0.02)
        [got] = await b.wait_finished([new.id], 30.0)
    assert got.result == 1
    assert reads == [1]


def _statements(b: PostgresBackend) -> list[str]:
    """Every statement ``b`` sends from now on, in order."""
    sent: list[str] = []
    run = b._rows

    async def logged(query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        sent.append(query)
        return await run(query, params)

    b._rows = logged  # type: ignore[method-assign]
    return sent


async def _listening(
    make: Callable[..., PostgresBackend],
) -> tuple[PostgresBackend, PostgresBackend, list[str]]:
    """A worker's backend listening for queue q's jobs (its statements logged from then
    on), and a peer to enqueue them."""
    b, peer = make(), make()
    await b.open()
    await peer.open()
    await b.wait_for_jobs(["q"], 0.01)  # the worker's first wait starts the LISTEN
    # That wait gives the LISTEN only its own 0.01 s: on a busy machine it is up later,
    # and a notification sent before it is not heard.
    async with asyncio.timeout(PROMPT):
        await b.listener.connected.wait()
    return b, peer, _statements(b)


async def _heard_of(b: PostgresBackend, notifications: int) -> None:
    """Until b's listener has heard that many notifications of queue q."""
    async with asyncio.timeout(PROMPT):
        while b.listener.heard("q") != (1, notifications):
            await asyncio.sleep(0.01)


async def test_a_wait_after_an_empty_claim_takes_the_due_time_from_that_claim(
    make: Callable[..., PostgresBackend],
) -> None:
    # A claim that finds nothing says when the queue's next job is due: the worker's wait
    # right after it sends no statement of its own, unless the listener has heard of the
    # queue since the claim was sent (then it asks, as before).
    b, peer, sent = await _listening(make)
    await peer.enqueue([job(), job(delay=0.3)])
    await _heard_of(b, 1)
    assert len(await b.claim(["q"], "w1", 10, 30.0)) == 1
    assert await b.claim(["q"], "w1", 10, 30.0) == []  # after a short claim: no statement
    started = time.monotonic()
    async with asyncio.timeout(PROMPT):
        await b.wait_for_jobs(["q"], 30.0)  # until the delayed job is due, not 30 s
    assert time.monotonic() - started >= 0.2
    assert sent == [b._q.claim]
    assert len(await b.claim(["q"], "w1", 10, 30.0)) == 1
    assert await b.claim(["q"], "w1", 10, 30.0) == []
    await peer.enqueue([job()])
    await _heard_of(b, 2)
    async with asyncio.timeout(PROMPT):
        await b.wait_for_jobs(["q"], 30.0)  # heard since the claim: it asks, finds it due
    assert sent[-1] == b._q.next_due
    assert len(await b.claim(["q"], "w1", 10, 30.0)) == 1


async def test_the_claim_after_a_short_one_sends_nothing_unless_the_queue_was_heard_of(
    make: Callable[..., PostgresBackend],
) -> None:
    # A worker whose claim of one job leaves slots free claims again at once: that claim
    # finds nothing unless something was enqueued since, which the listener hears. It
    # sends no statement then; the claim after it (past the worker's wait) always does.
    b, peer, sent = await _listening(make)

    await peer.enqueue([job()])
    await _heard_of(b, 1)
    assert len(await b.claim(["q"], "w1", 10, 30.0)) == 1
    assert await b.claim(["q"], "w1", 10, 30.0) == []
    assert sent == [b._q.claim]
    assert await b.claim(["q"], "w1", 10, 30.0) == []  # once per short claim
    assert sent == [b._q.claim, b._q.claim]
    # Enqueued after a short claim: heard, so the next claim asks and gets it.
    await peer.enqueue([job()])
    await _heard_of(b, 2)
    assert len(await b.claim(["q"], "w1", 10, 30.0)) == 1
    await peer.enqueue([job()])
    await _heard_of(b, 3)
    assert len(await b.claim(["q"], "w1", 10, 30.0)) == 1
    assert sent == [b._q.claim] * 4
    # A full claim (as many as asked) marks nothing: the next one asks.
    await peer.enqueue([job(), job()])
    await _heard_of(b, 4)
    assert len(await b.claim(["q"], "w1", 1, 30.0)) == 1
    assert len(await b.claim(["q"], "w1", 1, 30.0)) == 1
    assert sent == [b._q.claim] * 6


async def test_a_claim_does_not_wait_for_its_flush_and_the_next_statement_does(
    make: Callable[..., PostgresBackend],
) -> None:
    # The claim commits without waiting for the WAL flush (docs/decisions.md); the setting
    # is its transaction's own, so a finish on the same pooled connection is durable again.
    b = make("&pool_min=1&pool_max=1")
    await b.open()
    await b.enqueue([job()])
    assert "set_config('synchronous_commit', 'off', true)" in b._q.claim
    [lease] = await b.claim(["q"], "w1", 1, 30.0)
    assert await b._rows("SHOW synchronous_commit") == [("on",)]
    assert await b.finish([(lease, Outcome("completed", codec.dumps(1)))]) == [True]


# -- indexes ----------------------------------------------------------------------------


async def test_claim_and_listings_use_the_partial_indexes_with_many_finished_jobs(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    b = make()
    await b.open()
    s = schema_name
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {s}.jobs (id, task, queue, state, data, finished_at) "
            "SELECT md5(i::text), 't', 'q', 'completed', '\\x7b7d', now() "
            "FROM generate_series(1, 50000) i"
        )
        await conn.execute(f"ANALYZE {s}.jobs")
    await b.enqueue([job() for _ in range(5)])

    async def plan(query: str, params: Any) -> str:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as c:
            rows = await (await c.execute(f"EXPLAIN {query}", params)).fetchall()
        return "\n".join(r[0] for r in rows)

    claim = await plan(b._q.claim, {"q": "q", "n": 10, "w": "w", "lease": 30.0})
    assert "jobs_claim_idx" in claim, claim
    failed = await plan(
        f"SELECT id FROM {s}.jobs WHERE state = 'failed' ORDER BY created_at DESC, id DESC "
        "LIMIT 50",
        (),
    )
    assert "jobs_state_created_idx" in failed, failed
    # The listings' own statements: a queue's page, and all jobs merged from each state.
    page = {"queue": "q", "task": None, "limit": 50, "offset": 0}
    for by_queue, state, index in [
        (True, None, "jobs_queue_state_created_idx"),
        (True, "completed", "jobs_queue_state_created_idx"),
        (False, None, "jobs_state_created_idx"),
    ]:
        listing = await plan(b.sql.newest(by_queue, state, ""), page)
        assert index in listing and "Seq Scan" not in listing, listing
    reclaim = await plan(b._q.reclaim, ())
    assert "Seq Scan on jobs" not in reclaim, reclaim
    leases = await b.claim(["q"], "w", 10, 30)
    assert len(leases) == 5


# -- URL and housekeeping -------------------------------------------------------------------


def test_url_parameters_and_password_hiding() -> None:
    b = PostgresBackend(
        "postgresql://u:s3cret@db.example:5433/app?schema=jobs&connect_timeout=3&pool_max=4"
    )
    assert "s3cret" not in b.url and "***" in b.url
    assert b.schema == "jobs"
    assert "connect_timeout=3" in b._conninfo and "schema" not in b._conninfo
    assert "pool_max" not in b._conninfo
    assert PostgresBackend("postgresql://h/db").url == "postgresql://h/db"
    with pytest.raises(ConfigError, match="not a valid name"):
        PostgresBackend("postgresql://h/db?schema=Robert');DROP")
    with pytest.raises(ConfigError, match="migrate=auto"):
        PostgresBackend("postgresql://h/db?migrate=yes")
    with pytest.raises(ConfigError, match="pool_max"):
        PostgresBackend("postgresql://h/db?pool_max=0")


async def test_connection_error_names_the_url_without_its_password() -> None:
    b = PostgresBackend("postgresql://u:s3cret@127.0.0.1:1/db?schema=x&connect_timeout=2")
    with pytest.raises(BackendError) as info:
        await b.open()
    text = str(info.value)
    assert "127.0.0.1:1" in text and "s3cret" not in text and "Check that" in text
    await b.close()


async def test_open_and_close_are_idempotent(make: Callable[..., PostgresBackend]) -> None:
    b = make()
    await b.open()
    await b.open()
    await b.close()
    await b.close()
    with pytest.raises(BackendError, match="not open"):
        await b.get("x")


async def test_migration_0011_indexes_the_events_by_job(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    b = make()
    assert await b.migrate(target=10) == list(range(1, 11))
    assert 11 in await b.migrate()
    await b.open()
    (res,) = await b.enqueue([job("a")])
    assert [e.type for e in await b.job_events(res.id)] == ["job.queued"]
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute("SET enable_seqscan = off")  # a small table: the plan it picks big
        cur = await conn.execute(
            f"EXPLAIN SELECT id FROM {schema_name}.events WHERE job_id = 'x' AND run IS NULL "
            "ORDER BY id DESC LIMIT 100"  # job_events' condition (0014 left run events out)
        )
        plan = " ".join(str(row[0]) for row in await cur.fetchall())
    assert "events_job_idx" in plan


async def test_migration_0014_scans_kv_keys_by_range_and_leaves_run_events_out_of_jobs(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    """A scan by prefix (a flow run's keys at each check of its end) reads one range of the
    key index, not the whole table that holds every run's keys; it stays exact, and keys
    written before 0014 are found after it."""
    b = make()
    assert await b.migrate(target=13) == list(range(1, 14))
    old = {"run:1:a": "x", "run:1:b": "y", "run:10:a": "z", "run:1;": "w", "run:": "v"}
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        for key, value in old.items():
            await conn.execute(
                f"INSERT INTO {schema_name}.kv (key, value) VALUES (%s, %s)", (key, value)
            )
    assert await b.migrate() == list(range(14, pg_schema.latest() + 1))
    await b.open()
    await b.kv_set("run:1:é", "new")
    assert await b.kv_scan("run:1:") == {"run:1:a": "x", "run:1:b": "y", "run:1:é": "new"}
    every = {**old, "run:1:é": "new"}
    assert await b.kv_scan("run:1") == {k: v for k, v in every.items() if k.startswith("run:1")}
    assert await b.kv_scan("") == every  # no range: every key
    assert await b.kv_scan("run:1:é") == {"run:1:é": "new"}  # not ASCII: no range either
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute("SET enable_seqscan = off")  # a small table: the plan it picks big
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE scan (text, text) AS {_scan_text(b, schema_name)}")
        cur = await conn.execute("EXPLAIN EXECUTE scan ('run:1:', 'run:1;')")
        plan = " ".join(str(row[0]) for row in await cur.fetchall())
    assert "kv_pkey" in plan and "key >=" in plan
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            (schema_name, "events_job_idx"),
        )
        (indexdef,) = await cur.fetchone() or ("",)
    assert "run IS NULL" in indexdef  # a flow run's events are read by their run


async def test_migration_0015_listings_read_the_ascending_indexes_backwards(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    """Jobs written before 0015 are listed newest first after it, page after page, from
    the listing indexes read backwards; new entries ascend."""
    b = make()
    assert await b.migrate(target=14) == list(range(1, 15))
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {schema_name}.jobs (id, task, queue, data, created_at) "
            "SELECT 'j' || lpad(i::text, 3, '0'), 't', 'q', '\\x6e756c6c', "
            "now() - make_interval(secs => i / 2) FROM generate_series(1, 30) i"
        )
    assert await b.migrate() == [15]
    await b.open()
    await b.enqueue([job() for _ in range(3)])
    for queue in (None, "q"):
        pages, after = [], None
        while page := await b.query(queue=queue, state=JobState.QUEUED, limit=7, after=after):
            pages += page
            after = JobKey.of(page[-1])
        keys = [(j.created_at, j.id) for j in pages]
        assert len(keys) == 33 and keys == sorted(keys, reverse=True)
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute("SET enable_seqscan = off")  # a small table: the plan it picks big
        cur = await conn.execute(
            f"EXPLAIN {b.sql.newest(True, 'queued', '')}",
            {"queue": "q", "limit": 50, "offset": 0},
        )
        plan = " ".join(str(row[0]) for row in await cur.fetchall())
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s",
            (schema_name, "jobs_%state_created_idx"),
        )
        defs = [row[0] for row in await cur.fetchall()]
    assert "Index Scan Backward using jobs_queue_state_created_idx" in plan, plan
    assert len(defs) == 2 and not any("DESC" in d for d in defs), defs


def _scan_text(b: PostgresBackend, schema_name: str) -> str:
    """The backend's scan by prefix, its parameters as $1 (prefix) and $2 (end)."""
    text = b._q.kv_scan  # the statement itself: what the test checks is its plan
    return text.replace("%(p)s", "$1").replace("%(end)s", "$2")


async def test_event_log_is_bounded(make: Callable[..., PostgresBackend]) -> None:
    b = make("&max_events=5")
    await b.open()
    await b.publish([Event(f"e{i}") for i in range(12)])
    await b.sweep()
    events = await b.events()
    assert [e.type for e in events] == [f"e{i}" for i in range(7, 12)]


async def test_expired_keys_are_swept(
    make: Callable[..., PostgresBackend], schema_name: str
) -> None:
    b = make()
    await b.open()
    assert await b.set_if_absent("k", "v", ttl=0.05)
    await b.counter_add("c", 1, ttl=0.05)
    await asyncio.sleep(0.1)
    await b.sweep()
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        kv = await (await conn.execute(f"SELECT count(*) FROM {schema_name}.kv")).fetchone()
        counters = await (
            await conn.execute(f"SELECT count(*) FROM {schema_name}.counters")
        ).fetchone()
    assert kv == (0,) and counters == (0,)


async def test_retry_is_refused_while_a_newer_job_holds_the_dedup_key(
    make: Callable[..., PostgresBackend],
) -> None:
    b = make()
    await b.open()
    first = job(dedup_key="k")
    await b.enqueue([first])
    assert await b.cancel(first.id) is JobState.CANCELLED
    (second,) = await b.enqueue([job(dedup_key="k")])
    assert second.created
    assert await b.retry(first.id) is False
    assert await b.cancel(second.id) is JobState.CANCELLED
    assert await b.retry(first.id) is True


async def test_concurrent_enqueues_share_commits_and_a_refused_one_fails_alone(
    make: Callable[..., PostgresBackend],
) -> None:
    # Group commit: calls made while the enqueue lanes are busy go in one statement (one
    # commit). A call the server refuses must not take the others down with it: the shared
    # statement rolled back whole, so the calls run again (in halves) and each gets its own
    # answer.
    b = make()
    await b.open()
    statements = 0
    alone = b._group._run

    async def counted(jobs: Any) -> Any:
        nonlocal statements
        statements += 1
        return await alone(jobs)

    b._group._run = counted
    good = [[job()] for _ in range(80)]
    bad = [job(dedup_key="nul\x00key")]
    got = await asyncio.gather(
        *(b.enqueue(jobs) for jobs in [*good[:40], bad, *good[40:]]), return_exceptions=True
    )
    assert isinstance(got[40], ConfigError) and "NUL" in str(got[40])
    for jobs, res in zip(good, got[:40] + got[41:], strict=True):
        assert not isinstance(res, BaseException), res
        assert [(r.id, r.created) for r in res] == [(jobs[0].id, True)]
    assert (await b.counts(["q"]))["q"][JobState.QUEUED] == 80
    assert statements < 40, "the calls did not share commits"


async def test_every_finish_shape_is_valid_sql(make: Callable[..., PostgresBackend]) -> None:
    """The finish statements are rendered at first use, 32 shapes; a shape the contract
    tests never reach must not first fail in production."""
    b = make()
    await b.open()
    caps = (b.max_log_lines, b.max_log_bytes, "[]")
    followups = pg_backend._claim_params([], arrays.texts([]))
    for shape in itertools.product((False, True), repeat=4):
        assert await b._rows(b._q.finish[shape], caps) == []
        assert await b._rows(b._q.finish_followups[shape], (*caps, *followups)) == []
    assert len(b._q.finish) == len(b._q.finish_followups) == 16
