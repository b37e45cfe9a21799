"""What only the SQLite backend promises: one file shared by several connections (each
backend object is one, as each process would be), WAL mode, and writes that wait for a
lock instead of failing. The behaviour every backend shares lives in tests/contract."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from workhorse import codec
from workhorse.backends import backend_from_url
from workhorse.backends.sqlite import SCHEMA_VERSION, SQLiteBackend, path_from_url
from workhorse.backends.sqlite import statements as sqlite_statements
from workhorse.backends.sqlite.reads import listing, query_select
from workhorse.errors import BackendError, ConfigError
from workhorse.job import JobKey, JobState, NewJob, Outcome, new_job_id


def job(queue: str = "q", **kw: object) -> NewJob:
    return NewJob(new_job_id(), "t", queue, codec.dumps({}), **kw)  # type: ignore[arg-type]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wh.db'}"


@pytest.fixture(params=["watch=true", "watch=false"])
async def pair(
    url: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[SQLiteBackend, SQLiteBackend]]:
    """Two connections to one file; wake-ups by inotify (Linux) and by polling alone."""
    a, b = SQLiteBackend(f"{url}?{request.param}"), SQLiteBackend(url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_folder_and_file_are_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "wh.db"
    backend = backend_from_url(f"sqlite:///{path}")
    assert isinstance(backend, SQLiteBackend)
    await backend.open()
    try:
        assert path.is_file()
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await backend.close()


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert path_from_url("sqlite:///.workhorse/w.db") == str(tmp_path / ".workhorse" / "w.db")
    assert path_from_url("sqlite:////abs/w.db") == "/abs/w.db"
    assert path_from_url("sqlite:////abs/w.db?max_events=10") == "/abs/w.db"
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "postgres:///x"):
        with pytest.raises(ConfigError):
            path_from_url(bad)
    with pytest.raises(ConfigError, match="lock_timeout, max_events, poll, watch"):
        SQLiteBackend("sqlite:////abs/w.db?nope=1")


async def test_open_and_close_are_idempotent_and_a_closed_backend_says_so(url: str) -> None:
    backend = SQLiteBackend(url)
    await backend.open()
    await backend.open()
    await backend.enqueue([job()])
    await backend.close()
    await backend.close()
    with pytest.raises(BackendError, match="not open"):
        await backend.get("x")
    await backend.open()  # and it opens again, with the data kept
    assert (await backend.counts(["q"]))["q"][JobState.QUEUED] == 1
    await backend.close()


async def test_two_connections_see_each_others_jobs(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    a, b = pair
    (res,) = await a.enqueue([job()])
    (lease,) = await b.claim(["q"], "w", 10, 30.0)
    assert lease.job_id == res.id
    got = await a.get(res.id)
    assert got is not None
    assert got.state is JobState.ACTIVE
    assert await b.finish([(lease, Outcome("completed", codec.dumps(7)))]) == [True]
    (done,) = await a.wait_finished([res.id], 5.0)
    assert (done.state, done.result) == (JobState.COMPLETED, 7)


async def test_another_connections_enqueue_wakes_a_waiting_worker(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    a, b = pair
    waiter = asyncio.create_task(a.wait_for_jobs(["q"], 10.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    start = time.monotonic()
    await b.enqueue([job()])
    await asyncio.wait_for(waiter, 5.0)
    assert time.monotonic() - start < 0.5  # woken by the commit, not by the timeout
    if a.watch and sys.platform.startswith("linux"):
        assert a._watcher.inotify is not None  # inotify, not the slower stat safety net, is in use


async def test_another_connections_finish_wakes_a_waiting_caller(
    pair: tuple[SQLiteBackend, SQLiteBackend],
) -> None:
    a, b = pair
    (res,) = await a.enqueue([job()])
    waiter = asyncio.create_task(a.wait_finished([res.id], 10.0))
    (lease,) = await b.claim(["q"], "w", 1, 30.0)
    await asyncio.sleep(0.05)
    start = time.monotonic()
    await b.finish([(lease, Outcome("failed", error={"type": "E", "message": "m"}))])
    (done,) = await asyncio.wait_for(waiter, 5.0)
    assert done.state is JobState.FAILED
    assert time.monotonic() - start < 0.5


async def test_wait_for_jobs_ends_when_a_scheduled_job_falls_due(url: str) -> None:
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        await backend.enqueue([job(delay=0.3)])
        start = time.monotonic()
        await backend.wait_for_jobs(["q"], 10.0)
        assert 0.2 < time.monotonic() - start < 2.0
        assert len(await backend.claim(["q"], "w", 5, 30.0)) == 1
    finally:
        await backend.close()


def _claim_all(url: str, worker: str, out: list[str], errors: list[BaseException]) -> None:
    async def run() -> None:
        backend = SQLiteBackend(url)
        await backend.open()
        try:
            while leases := await backend.claim(["q"], worker, 7, 30.0):
                out.extend(lease.job_id for lease in leases)
        finally:
            await backend.close()

    try:
        asyncio.run(run())
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


async def test_concurrent_claims_never_hand_out_a_job_twice(url: str) -> None:
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        ids = [r.id for r in await backend.enqueue([job() for _ in range(600)])]
        found: list[list[str]] = [[], [], []]
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_claim_all, args=(url, f"w{i}", found[i], errors))
            for i in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        claimed = [i for part in found for i in part]
        assert len(claimed) == len(set(claimed)) == 600
        assert set(claimed) == set(ids)
        assert sum(1 for part in found if part) >= 2  # they really competed
    finally:
        await backend.close()


CHILD = """
import asyncio, sys
from workhorse.backends.sqlite import SQLiteBackend

async def main():
    b = SQLiteBackend(sys.argv[1])
    await b.open()
    got = []
    while leases := await b.claim(["q"], "child", 5, 30.0):
        got += [lease.job_id for lease in leases]
    await b.close()
    print(" ".join(got))

asyncio.run(main())
"""


async def test_separate_processes_split_the_queue_between_them(url: str) -> None:
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        ids = {r.id for r in await backend.enqueue([job() for _ in range(400)])}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD, url, stdout=subprocess.PIPE
            )
            for _ in range(2)
        ]
        outs = [await asyncio.wait_for(p.communicate(), 30) for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        claimed = [i for out, _ in outs for i in out.decode().split()]
        assert len(claimed) == len(set(claimed)) == 400
        assert set(claimed) == ids
    finally:
        await backend.close()


def _hold_write_lock(path: str, seconds: float, held: threading.Event) -> None:
    raw = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO wh_paused (queue) VALUES ('held')")
        held.set()
        time.sleep(seconds)
        raw.execute("COMMIT")
    finally:
        raw.close()


async def test_a_write_waits_for_another_connections_write_transaction(url: str) -> None:
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        held = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(backend.path, 0.6, held))
        holder.start()
        assert await asyncio.to_thread(held.wait, 5)
        start = time.monotonic()
        (res,) = await backend.enqueue([job()])  # no "database is locked"
        waited = time.monotonic() - start
        await asyncio.to_thread(holder.join, 5)
        assert waited > 0.3
        assert await backend.get(res.id) is not None
        assert "held" in await backend.paused()
    finally:
        await backend.close()


async def test_a_lock_held_past_lock_timeout_fails_with_a_clear_error(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'wh.db'}?lock_timeout=0.3")
    await backend.open()
    try:
        held = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(backend.path, 1.5, held))
        holder.start()
        assert await asyncio.to_thread(held.wait, 5)
        with pytest.raises(BackendError, match="stayed locked for 0.3s"):
            await backend.enqueue([job()])
        await asyncio.to_thread(holder.join, 5)
    finally:
        await backend.close()


async def test_jobs_survive_closing_and_reopening(url: str) -> None:
    first = SQLiteBackend(url)
    await first.open()
    (res,) = await first.enqueue([job(delay=60)])
    await first.close()
    second = SQLiteBackend(url)
    await second.open()
    try:
        got = await second.get(res.id)
        assert got is not None
        assert got.state is JobState.SCHEDULED
    finally:
        await second.close()


async def test_the_event_log_is_trimmed(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'wh.db'}?max_events=100")
    await backend.open()
    try:
        await backend.enqueue([job() for _ in range(2500)])  # one job.queued each
        with sqlite3.connect(backend.path) as raw:
            (kept,) = raw.execute("SELECT count(*) FROM wh_events").fetchone()
        assert kept <= 100 + 1000  # trimmed every thousand writes, to the newest 100
        newest = await backend.events(after=0, limit=5000)
        assert newest[-1].id == 2500  # the cursor keeps counting
    finally:
        await backend.close()


async def test_claim_and_promotion_use_the_live_job_indexes(url: str) -> None:
    """With many finished jobs in the table a claim must stay an index probe."""
    backend = SQLiteBackend(url)
    await backend.open()
    await backend.close()
    params = {"worker": "w", "now": 1.0, "lease": 30.0, "queue": "q", "limit": 5}
    with sqlite3.connect(path_from_url(url)) as raw:
        claim = str(raw.execute("EXPLAIN QUERY PLAN " + sqlite_statements.CLAIM, params).fetchall())
        promote = str(
            raw.execute("EXPLAIN QUERY PLAN " + sqlite_statements.PROMOTE, params).fetchall()
        )
    assert "USING INDEX wh_jobs_ready" in claim
    assert "TEMP B-TREE" not in claim  # the index gives the order: no sort of the queue
    assert "SCAN wh_jobs" not in claim
    assert "USING INDEX wh_jobs_scheduled" in promote


async def test_a_large_purge_goes_in_chunks_and_keeps_the_newest(url: str) -> None:
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        ids = [r.id for r in await backend.enqueue([job() for _ in range(5000)])]
        with sqlite3.connect(backend.path) as raw:  # finished one second apart, in order
            raw.execute("UPDATE wh_jobs SET state = 'completed', finished_at = seq")
        n = await backend.purge(states={JobState.COMPLETED}, keep_last=10)
        assert n == 4990  # more than one chunk of 2,000
        left = await backend.query(state=JobState.COMPLETED, limit=100)
        assert {j.id for j in left} == set(ids[-10:])
        assert await backend.purge(states={JobState.COMPLETED}, older_than=0.0) == 10
    finally:
        await backend.close()


async def test_listings_read_index_ranges_not_the_table(url: str) -> None:
    """A queue's page reads wh_jobs_queue_created, failed jobs (of a queue or across them)
    wh_jobs_failed, one range per queue, never the whole table; a keyset page too."""
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        await backend.enqueue([job("a"), job("b"), job("b")])
        leases = await backend.claim(["a", "b"], "w", 2, 30.0)
        await backend.finish([(lease, Outcome("failed", error={})) for lease in leases])
        cases = [("a", None, "wh_jobs_queue_created"), ("a", JobState.FAILED, "wh_jobs_failed"),
                 (None, JobState.FAILED, "wh_jobs_failed"), (None, None, "wh_jobs_queue_created"),
                 (None, JobState.QUEUED, "wh_jobs_queue_created")]  # fmt: skip
        with sqlite3.connect(backend.path) as raw:
            for queue, state, index in cases:
                for after in (None, (1.0, "x")):
                    [sql], params = query_select(raw, queue, state, None, 0.0, after)
                    plan = " / ".join(
                        r[3]
                        for r in raw.execute(
                            f"EXPLAIN QUERY PLAN {sql}", params | {"limit": 50, "offset": 0}
                        )
                    )
                    assert index in plan, plan
                    assert "SCAN wh_jobs" not in plan, plan
            # Active jobs (the overview's running jobs): the partial lease index holds only
            # them, so its whole scan is bounded by the workers' slots, not the table.
            for queue in ("a", None):
                [sql], params = query_select(raw, queue, JobState.ACTIVE, None, 0.0)
                plan = " / ".join(
                    r[3]
                    for r in raw.execute(
                        f"EXPLAIN QUERY PLAN {sql}", params | {"limit": 50, "offset": 0}
                    )
                )
                assert "USING INDEX wh_jobs_lease" in plan, plan
    finally:
        await backend.close()


async def test_a_listing_across_more_queues_than_one_statement_reads_merges_them(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across queues a page is one index range per queue; past one statement's ranges the
    statements' pages are merged: the same page, newest first, offsets included."""
    monkeypatch.setattr("workhorse.backends.sqlite.reads._MAX_RANGES", 3)
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        ids = []
        for i in range(12):  # one at a time: each created after the one before
            ids += [r.id for r in await backend.enqueue([job(f"q{i % 7}")])]
        newest = ids[::-1]
        assert [j.id for j in await backend.query(limit=5)] == newest[:5]
        assert [j.id for j in await backend.query(limit=4, offset=6)] == newest[6:10]
        assert [j.id for j in await backend.query(limit=50)] == newest
        after = JobKey.of(next(j for j in await backend.query(limit=3) if j.id == newest[2]))
        assert [j.id for j in await backend.query(limit=3, after=after)] == newest[3:6]
    finally:
        await backend.close()


async def test_a_listing_of_a_state_across_queues_skips_the_queues_without_one(url: str) -> None:
    """Completed jobs across queues, with 3,000 queued ones in another queue: that queue's
    range is not walked (it holds no completed job), so the listing reads next to nothing."""
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        [done] = await backend.enqueue([job("a")])
        leases = await backend.claim(["a"], "w", 1, 30.0)
        await backend.finish([(lease, Outcome("completed", codec.dumps(1))) for lease in leases])
        await backend.enqueue([job("big") for _ in range(3000)])
    finally:
        await backend.close()
    with sqlite3.connect(backend.path) as raw:
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        raw.set_progress_handler(step, 1)
        rows = listing(raw, None, JobState.COMPLETED, None, time.time(), None, 50, 0)
        raw.set_progress_handler(None, 1)
    assert [row[0] for row in rows] == [done.id]
    assert steps < 3000  # fewer SQLite instructions than the big queue has entries


async def test_a_version_8_file_keeps_its_order_and_its_jobs_events(tmp_path: Path) -> None:
    """Schema 9 takes a job's seq from the id of the event that queued it, and finds the
    enqueue's job.queued event from the job's row: a file written by schema 8 keeps its
    jobs' places ahead of new ones and shows their events."""
    path = tmp_path / "old.db"
    backend = SQLiteBackend(f"sqlite:///{path}")
    await backend.open()
    [old] = await backend.enqueue([job("a")])
    await backend.close()
    with sqlite3.connect(path) as raw:  # back to schema 8: seqs from wh_meta's counter
        raw.executescript(
            "ALTER TABLE wh_jobs DROP COLUMN queued_event; ALTER TABLE wh_jobs DROP COLUMN "
            "completed_event; DROP INDEX wh_events_job;"
            "CREATE INDEX wh_events_job ON wh_events (job_id, id) WHERE job_id IS NOT NULL;"
            "CREATE INDEX wh_jobs_created ON wh_jobs (created_at);"
            "UPDATE wh_meta SET value = 1000000 WHERE key = 'seq';"
            "UPDATE wh_jobs SET seq = 1000000, run_at = 5.0; PRAGMA user_version = 8;"
        )
    backend = SQLiteBackend(f"sqlite:///{path}")
    await backend.open()
    try:
        [new] = await backend.enqueue([job("a", at=5.0)])  # due with the old one: seq decides
        assert [e.type for e in await backend.job_events(old.id)] == ["job.queued"]
        leases = await backend.claim(["a"], "w", 2, 30.0)
        assert [lease.job_id for lease in leases] == [old.id, new.id]
    finally:
        await backend.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "wh_jobs_created" not in indexes


async def test_a_completion_is_named_by_its_row_and_a_version_9_file_gains_that(
    tmp_path: Path,
) -> None:
    """Schema 10: wh_events_job leaves job.completed out and the job's row names it
    (completed_event), so a completion writes no page of that index; a job's page still
    shows it, on a new file and on one written by schema 9 (filled from the log)."""
    path = tmp_path / "old.db"
    backend = SQLiteBackend(f"sqlite:///{path}")
    await backend.open()
    try:
        [old] = await backend.enqueue([job("a")])
        [lease] = await backend.claim(["a"], "w", 1, 30.0)
        assert await backend.finish([(lease, Outcome("completed", codec.dumps(1)))]) == [True]
        types = ["job.queued", "job.started", "job.completed"]
        assert [e.type for e in await backend.job_events(old.id)] == types
        logged = [e for e in await backend.events() if e.job_id == old.id]
    finally:
        await backend.close()
    with sqlite3.connect(path) as raw:
        (named,) = raw.execute("SELECT completed_event FROM wh_jobs WHERE id = ?", (old.id,))
        assert named[0] == logged[-1].id and logged[-1].type == "job.completed"
        raw.executescript(  # back to schema 9: its index held completions, no row named one
            "ALTER TABLE wh_jobs DROP COLUMN completed_event; DROP INDEX wh_events_job;"
            "CREATE INDEX wh_events_job ON wh_events (job_id, id) WHERE job_id IS NOT NULL "
            "AND (type <> 'job.queued' OR data IS NOT NULL); PRAGMA user_version = 9;"
        )
    backend = SQLiteBackend(f"sqlite:///{path}")
    await backend.open()
    try:
        assert [e.type for e in await backend.job_events(old.id)] == types
    finally:
        await backend.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (sql,) = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'wh_events_job'")
        assert "job.completed" in sql[0]


async def test_the_dedup_index_tests_states_without_a_list_and_a_version_10_file_gains_it(
    tmp_path: Path,
) -> None:
    """Schema 11: the dedup index's condition compares the state three times instead of
    ``state IN (...)``, for which SQLite built a temporary b-tree in every statement that
    writes a job with a dedup key; and the job-events index leaves a flow run's events out
    (read by their run). Dedup holds as before, on a new file and on one written by schema
    10."""
    path = tmp_path / "old.db"

    async def dedups(queue: str) -> None:
        backend = SQLiteBackend(f"sqlite:///{path}")
        await backend.open()
        try:
            [first] = await backend.enqueue([job(queue, dedup_key="k")])
            [again] = await backend.enqueue([job(queue, dedup_key="k")])
            assert first.created and not again.created and again.id == first.id
            [lease] = await backend.claim([queue], "w", 1, 30.0)
            [running] = await backend.enqueue([job(queue, dedup_key="k")])
            assert not running.created  # an active job holds its key
            assert await backend.finish([(lease, Outcome("completed", codec.dumps(1)))]) == [True]
            [after] = await backend.enqueue([job(queue, dedup_key="k")])
            assert after.created and after.id != first.id  # a finished one does not
        finally:
            await backend.close()

    await dedups("a")
    with sqlite3.connect(path) as raw:
        for statement in (sqlite_statements.INSERT, sqlite_statements.END):
            ops = [row[1] for row in raw.execute("EXPLAIN " + statement, _nulls(statement))]
            # END's one is its RETURNING's; a list in the index's condition added two more.
            assert ops.count("OpenEphemeral") <= statement.count("RETURNING")
        raw.executescript(  # back to schema 10's conditions
            "DROP INDEX wh_jobs_dedup_queue; CREATE UNIQUE INDEX wh_jobs_dedup_queue ON "
            "wh_jobs (queue, dedup_key) WHERE dedup_key IS NOT NULL AND state IN "
            "('queued', 'scheduled', 'active'); DROP INDEX wh_events_job; CREATE INDEX "
            "wh_events_job ON wh_events (job_id, id) WHERE job_id IS NOT NULL AND (type <> "
            "'job.queued' OR data IS NOT NULL) AND type <> 'job.completed'; "
            "PRAGMA user_version = 10;"
        )
    await dedups("b")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (sql,) = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'wh_jobs_dedup_queue'")
        assert " IN " not in sql[0] and "state = 'active'" in sql[0]
        (sql,) = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'wh_events_job'")
        assert "run IS NULL" in sql[0]


def _nulls(statement: str) -> dict[str, None] | list[None]:
    """NULL for each parameter of ``statement`` (named or positional), to EXPLAIN it."""
    names = re.findall(r":(\w+)", statement)
    return dict.fromkeys(names) if names else [None] * statement.count("?")


async def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file written before dedup keys were per queue and jobs had their own retention
    opens with its jobs intact and gains both."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.executescript((Path(__file__).parent / "data" / "sqlite_schema_1.sql").read_text())
        raw.execute(
            "INSERT INTO wh_jobs (id, task, queue, state, data, priority, max_attempts, "
            "dedup_key, created_at, run_at, seq) "
            "VALUES ('old-1', 't', 'a', 'queued', '{}', 0, 1, 'k', 1.0, 1.0, 1)"
        )
        raw.execute("PRAGMA user_version = 1")
    backend = SQLiteBackend(f"sqlite:///{path}")
    await backend.open()
    try:
        old = await backend.get("old-1")
        assert old is not None and old.state is JobState.QUEUED and old.keep_for is None
        assert (await backend.counts(["a"]))["a"][JobState.QUEUED] == 1  # counted once
        # Per queue now: the same key in another queue is a new job, in its own a duplicate.
        other, same = await backend.enqueue([job("b", dedup_key="k"), job("a", dedup_key="k")])
        assert other.created and not same.created and same.id == "old-1"
        fresh = await backend.enqueue([job("a", keep_for=0.0)])
        leases = await backend.claim(["a"], "w", 2, 30.0)
        assert [lease.job_id for lease in leases] == ["old-1", fresh[0].id]
        done = [(lease, Outcome("completed", codec.dumps(1))) for lease in leases]
        assert await backend.finish(done) == [True, True]
        # Its own keep_for=0 has passed; the old job follows the settings (a day).
        assert await backend.purge(states={JobState.COMPLETED}, retention=True) == 1
        assert await backend.get(fresh[0].id) is None
        assert await backend.get("old-1") is not None
    finally:
        await backend.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("watch", ["false", "true"])
async def test_an_idle_wait_looks_at_the_store_a_few_times_not_every_millisecond(
    url: str, watch: str
) -> None:
    """Where inotify is missing (macOS, some containers) the waiter polls the -wal file:
    while nothing changes it backs off, so an idle worker costs next to nothing."""
    backend = SQLiteBackend(f"{url}?watch={watch}")
    await backend.open()
    looks = 0
    mark = backend._watcher.mark

    def counted() -> tuple[int, int, int]:
        nonlocal looks
        looks += 1
        return mark()

    backend._watcher.mark = counted  # type: ignore[method-assign]
    try:
        await backend.wait_for_jobs(["q"], 1.0)
    finally:
        await backend.close()
    assert looks <= 20, f"{looks} looks at the -wal file in one idle second"


async def test_a_commit_after_an_idle_stretch_wakes_a_polling_waiter_within_a_poll(
    url: str,
) -> None:
    waiter, writer = SQLiteBackend(f"{url}?watch=false"), SQLiteBackend(url)
    await waiter.open()
    await writer.open()
    try:
        wait = asyncio.create_task(waiter.wait_for_jobs(["q"], 30.0))
        await asyncio.sleep(2.0)  # long enough for the backoff to reach its ceiling
        await writer.enqueue([job()])
        enqueued = time.monotonic()
        await asyncio.wait_for(wait, 10)
        assert time.monotonic() - enqueued < 2.0 + 1.0  # its ceiling, and scheduling slack
    finally:
        await waiter.close()
        await writer.close()


async def test_a_page_after_a_gone_anchor_places_it_by_the_microsecond_readers_saw(
    url: str,
) -> None:
    # A stored time whose rounding in SQL (half away from zero, on seconds * 1e6) differs
    # from the datetime's: a page after the tied jobs' gone anchor came back empty.
    stored = 1796521123.3601325
    backend = SQLiteBackend(url)
    await backend.open()
    try:
        ids = sorted((r.id for r in await backend.enqueue([job() for _ in range(4)])), reverse=True)
        with sqlite3.connect(path_from_url(url)) as raw:
            raw.execute("UPDATE wh_jobs SET created_at = ?", (stored,))
        anchor = await backend.get(ids[1])
        assert anchor is not None
        assert await backend.cancel(ids[1]) is JobState.CANCELLED
        await backend.purge(states={JobState.CANCELLED}, keep_last=0)
        page = await backend.query(after=JobKey.of(anchor))
        assert [j.id for j in page] == ids[2:]
    finally:
        await backend.close()
