"""The PostgreSQL backend: psycopg 3 with a connection pool, one statement per state change.

URL: ``postgresql://user:password@host:5432/db?schema=workhorse&migrate=auto`` where the
workhorse parameters (removed before connecting; the rest go to libpq) are:

- ``schema``: the PostgreSQL schema holding the tables (default ``workhorse``);
- ``migrate=auto``: apply pending migrations on open instead of refusing an old schema;
- ``pool_min`` / ``pool_max``: connection pool size (default 2 / 10);
- ``max_events``: how many events the durable log keeps (default 100000).

libpq's ``connect_timeout`` defaults to 5 seconds here (libpq's own default is to wait).

Claims use ``FOR UPDATE SKIP LOCKED``; the database's ``now()`` decides every time;
LISTEN/NOTIFY wakes idle workers and waiting callers, and polling covers a lost listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from binascii import a2b_base64, b2a_base64
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import psycopg.errors
from psycopg import pq, sql
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from workhorse.backends.base import JOB_EVENTS, Backend, Capabilities, RenewResult
from workhorse.backends.group import GroupCommit
from workhorse.backends.postgres import arrays, positions
from workhorse.backends.postgres import schema as schema_mod
from workhorse.backends.postgres.listener import Listener
from workhorse.backends.postgres.options import OWN_PARAMS, SCHEMA_NAME, check_libpq, int_param
from workhorse.backends.postgres.rows import (
    STATES,
    enqueue_params,
    enqueue_row,
    job_of,
    salvage,
)
from workhorse.backends.postgres.statements import (
    Queries,
    Statements,
    purge_older,
    purge_own,
    purge_past_keep,
)
from workhorse.errors import BackendError, BackendUnavailable, ConfigError
from workhorse.events import HOLD_FACTOR, HOLD_PREFIX, retried, run_of
from workhorse.job import (
    Claim,
    Claimed,
    EnqueueResult,
    Event,
    Job,
    JobKey,
    JobState,
    Lease,
    NewJob,
    Outcome,
    WorkerInfo,
)
from workhorse.urls import redact

log = logging.getLogger("workhorse.postgres")

_SWEEP_EVERY = 30.0
_Q, _SCHED, _A = JobState.QUEUED, JobState.SCHEDULED, JobState.ACTIVE
_FINISHED = ("completed", "failed", "cancelled")
_ROWS = pq.ExecStatus.TUPLES_OK

AnyConn = psycopg.AsyncConnection[Any]
AnyCursor = psycopg.AsyncCursor[Any]
# A kept enqueue connection goes back to the pool after this long, so the pool's own
# lifetime rule (max_lifetime) still recycles it.
_SPARE_FOR = 60.0


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _claimed(won: bool, new: NewJob, written: dict[str, bool]) -> Claimed:
    """A claimed job's answer from the rows of its statement: ``written`` maps each job it
    wrote to whether it is scheduled."""
    if new.id not in written:
        return won, None
    return won, EnqueueResult(new.id, True, _SCHED if written[new.id] else _Q)


def _claim_params(sent: Sequence[tuple[Claim, NewJob]], *owners: Any) -> tuple[Any, ...]:
    """The claims' and their jobs' arrays of an enqueue_claimed statement (a finish's adds
    each one's owner after the claims)."""
    return (
        arrays.texts([c.key for c, _ in sent]),
        arrays.texts([c.value for c, _ in sent]),
        arrays.texts([c.unless for c, _ in sent]),
        *owners,
        *arrays.packed(enqueue_params([new for _, new in sent])),
    )


def _counter_sums(items: Sequence[tuple[str, int, float | None]]) -> dict[str, list[Any]]:
    """Adds by key: [n summed, the first ttl given] (what the adds one by one would leave)."""
    sums: dict[str, list[Any]] = {}
    for key, n, ttl in items:
        got = sums.get(key)
        if got is None:
            sums[key] = [n, _ttl(ttl)]
        else:
            got[0] += n
            if got[1] is None:
                got[1] = _ttl(ttl)
    return sums


def _publish_params(events: Sequence[Event]) -> tuple[Any, ...]:
    """The events' arrays of a publish statement."""
    # Packed text arrays: psycopg's own list dumper escapes JSON's quotes one regex
    # match at a time (half a flow step's Python on PostgreSQL went there).
    return (
        arrays.texts([e.type for e in events]),
        arrays.texts([e.job_id for e in events]),
        arrays.texts([e.task for e in events]),
        arrays.texts([e.queue for e in events]),
        arrays.texts([_dumps(e.data or {}) for e in events]),
        [e.at or None for e in events],
        arrays.texts([run_of(e) for e in events]),
    )


def _event_doc(e: Event) -> list[Any]:
    """An event as the finish's document carries it (type, job_id, task, queue, data, at,
    run)."""
    return [e.type, e.job_id, e.task, e.queue, e.data or {}, e.at or None, run_of(e)]


def _claim_answers(rows: Sequence[Any]) -> tuple[set[str], dict[str, bool]]:
    """The keys a claimed write set ("k" rows) and the jobs it wrote ("j": id, scheduled)."""
    claimed = {row[1] for row in rows if row[0] == "k"}
    written = {row[1]: row[2] for row in rows if row[0] == "j"}
    return claimed, written


def _accepted(ids: list[str], done: set[str]) -> list[bool]:
    """A finish's answer per item; a job listed twice is accepted once, like the reference."""
    accepted = []
    for job_id in ids:
        accepted.append(job_id in done)
        done.discard(job_id)
    return accepted


def _new_call(outcome: Outcome) -> str:
    """Stamp the outcome with its call id: the finisher sends the same Outcome again after
    a lost reply, and the store reports that call applied instead of refusing it."""
    outcome.call = os.urandom(8).hex()
    return outcome.call


@dataclass(slots=True)
class _Spare:
    """A pooled connection with its cursor: kept between statements (``_give``), its
    cursor's dumpers stay warm and no pool checkout is made per call."""

    conn: AnyConn
    cur: AnyCursor
    since: float

    def fresh(self) -> bool:
        return time.monotonic() - self.since < _SPARE_FOR


def _b64(raw: bytes) -> str:
    return b2a_base64(raw, newline=False).decode("ascii")


# counts() folds the counters' rows into one per (queue, state) past this many: a counts()
# call sums at most about this many rows however many jobs the table holds.
_FOLD_AT = 2000


# A schema's statement texts, shared by the backends of one process (a worker's and its
# lease renewal thread's): a few schemas at most in a deployed process, more in tests.
@functools.lru_cache(maxsize=8)
def _queries(schema: str) -> Queries:
    return Queries(Statements(schema))


class PostgresBackend(Backend):
    capabilities = Capabilities(
        durable=True,
        multi_process=True,
        multi_machine=True,
        transactional_enqueue=True,
        counted_event_ids=False,
        finish_followups=True,
        finish_events=True,
        finish_ends=True,
    )

    def __init__(self, url: str, *, migrate: bool | None = None) -> None:
        self.url = redact(url)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        own = {k: query.pop(k) for k in OWN_PARAMS if k in query}
        check_libpq(query)
        scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
        # Without it libpq waits for a connection as long as TCP does: an attempt made while
        # the path to the server hangs (a stalled proxy, a dropped route) holds one of the
        # pool's connecting tasks long after the path heals (chaos scenario 4).
        query.setdefault("connect_timeout", "5")
        self._conninfo = urlunsplit(parts._replace(scheme=scheme, query=urlencode(query)))
        self.schema = own.get("schema", "workhorse")
        if not SCHEMA_NAME.match(self.schema):
            raise ConfigError(
                f"schema={self.schema!r} in the PostgreSQL URL is not a valid name; use "
                "lower-case letters, digits and underscores (at most 50, not starting with "
                "a digit)"
            )
        mode = own.get("migrate", "")
        if mode not in ("", "auto", "off"):
            raise ConfigError(f"migrate={mode!r} in the PostgreSQL URL: use migrate=auto or off")
        self.auto_migrate = (mode == "auto") if migrate is None else migrate
        self._pool_min = int_param(own, "pool_min", 2)
        self._pool_max = max(self._pool_min, int_param(own, "pool_max", 10))
        self.max_events = int_param(own, "max_events", 100_000)
        # A server that stops answering on a live connection (a half-open network path, a
        # hung proxy) would hold a statement forever: give it up after this many seconds.
        self.call_timeout = float(int_param(own, "call_timeout", 30))
        self.sql = Statements(self.schema)
        self._q = _queries(self.schema)
        self._pool: AsyncConnectionPool[AnyConn] | None = None
        # Work for this process's workers, and finishes for its waiting callers: two
        # connections, each started by its first wait, so a worker is not woken by every
        # finish and a caller by every enqueue.
        self.listener = Listener(self._conninfo, self.schema, self.url)
        self.finishes = Listener(self._conninfo, self.schema, self.url, finishes=True)
        self._last_sweep = 0.0
        self._spare: _Spare | None = None
        # Per queue, from its last claim that found fewer jobs than it asked for (none, or
        # a short one): what the workers' listener had heard of the queue when it was
        # sent, and when its next job is due (monotonic).
        self._due: dict[str, tuple[tuple[int, int], float | None]] = {}
        self._short: set[str] = set()  # queues whose last claim took fewer than it asked
        # Not from a small pool: a kept connection is one fewer for every other statement.
        self._keep_spare = self._pool_max >= 4
        self._open_lock: asyncio.Lock | None = None
        # Concurrent enqueue calls share statements, on a few of the pool's connections.
        self._group = GroupCommit(self._enqueue_alone, lanes=min(4, self._pool_max), gather=True)
        # So do concurrent set_if_absent calls (a flow step's claims, one per step).
        self._claims = GroupCommit(self._claim_many, lanes=min(2, self._pool_max))
        # And concurrent kv_delete calls (a flow run's end removes its live entry).
        self._deletes = GroupCommit(self._delete_many, lanes=min(2, self._pool_max))
        # And concurrent enqueue_claimed calls (each flow step's follow-ups).
        self._claimed = GroupCommit(
            self._enqueue_claimed_many, lanes=min(4, self._pool_max), gather=True
        )

    # -- lifecycle ---------------------------------------------------------------------
    def _error(self, exc: BaseException, doing: str) -> BackendError:
        kind = BackendUnavailable if _unreachable(exc) else BackendError
        return kind(
            f"PostgreSQL at {self.url} failed while {doing}: {exc}. Check that the server "
            "runs and accepts connections from this host, and the user, password and "
            "database in the URL."
        )

    async def _connect(self) -> AnyConn:
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise self._error(exc, "connecting") from None

    async def schema_version(self) -> int:
        """The schema's version in the database (0: not created yet)."""
        conn = await self._connect()
        try:
            return await schema_mod.version(conn, self.schema)
        finally:
            await conn.close()

    async def migrate(self, target: int | None = None) -> list[int]:
        """Apply pending migrations (up to ``target``) under an advisory lock; works on a
        closed backend. Returns the versions applied; [] when already up to date."""
        conn = await self._connect()
        try:
            return await schema_mod.migrate(conn, self.schema, target)
        finally:
            await conn.close()

    async def open(self) -> None:
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._pool is not None:
                return
            conn = await self._connect()
            try:
                await schema_mod.check(conn, self.schema, self.url, self.auto_migrate)
            finally:
                await conn.close()
            pool: AsyncConnectionPool[AnyConn] = AsyncConnectionPool(
                self._conninfo, min_size=self._pool_min, max_size=self._pool_max, open=False,
                kwargs={"autocommit": True}, configure=_configure, timeout=10.0,
                name=f"workhorse-{self.schema}",
            )  # fmt: skip
            try:
                await pool.open(wait=True, timeout=10.0)
            except PoolTimeout as exc:
                await pool.close()
                raise self._error(exc, "opening the connection pool") from None
            self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        spare, self._spare = self._spare, None
        self._group.close()
        self._claims.close()
        self._claimed.close()
        self._deletes.close()
        await self.listener.stop()
        await self.finishes.stop()
        if pool is not None:
            if spare is not None:
                await pool.putconn(spare.conn)
            await pool.close()

    async def drop(self) -> None:
        """Drop this backend's schema and everything in it (tests use one per test)."""
        conn = await self._connect()
        try:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )
        finally:
            await conn.close()

    # -- one statement, one round trip -------------------------------------------------
    async def _take(self, pool: AsyncConnectionPool[AnyConn], alone: bool = True) -> _Spare:
        """The kept connection if it is free (and ``alone``), else one from the pool.
        getconn/putconn, not pool.connection(): the connections are autocommit, so its
        commit on exit (a lock and a wait per statement) does nothing."""
        spare = None
        if alone:
            spare, self._spare = self._spare, None
        if spare is None:
            conn = await pool.getconn()
            spare = _Spare(conn, conn.cursor(binary=True), time.monotonic())
        return spare

    async def _give(self, pool: AsyncConnectionPool[AnyConn], spare: _Spare) -> None:
        """Keep a connection that just answered, for the next statement, when none is kept
        (its pool checkout and its cursor cost more Python than the statement's own call);
        else give it back."""
        if self._keep_spare and self._spare is None and self._pool is pool and spare.fresh():
            self._spare = spare
        else:
            await pool.putconn(spare.conn)

    async def _rows(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        pool = self._pool
        if pool is None:
            raise BackendError(f"the PostgreSQL backend for {self.url} is not open")
        try:
            spare = await self._take(pool)
            try:
                async with asyncio.timeout(self.call_timeout):
                    cur = spare.cur
                    await cur.execute(query, params)
                    # Not cur.description: it builds a Column object per column, every call.
                    res = cur.pgresult
                    rows = await cur.fetchall() if res is not None and res.status == _ROWS else []
            except BaseException:
                await pool.putconn(spare.conn)  # the pool resets or discards it
                raise
            await self._give(pool, spare)
            return rows
        except psycopg.DataError as exc:
            raise _nul_refused(exc) from None
        except PoolTimeout as exc:
            raise self._error(exc, "waiting for a pooled connection") from exc
        except TimeoutError as exc:
            # psycopg cancelled the statement, or closed a connection that did not answer.
            raise self._error(
                TimeoutError(f"no answer in {self.call_timeout:g}s (URL call_timeout=)"),
                "running a statement",
            ) from exc
        except psycopg.OperationalError as exc:
            await self._check_pool(pool)
            raise self._error(exc, "running a statement") from exc

    async def now(self) -> float:
        rows = await self._rows("SELECT extract(epoch from now())::float8")
        return float(rows[0][0])

    # -- producing ---------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        if not jobs:
            return []
        return await self._group.submit(jobs)

    async def enqueue_watched(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """``enqueue`` for a ``run()`` caller: the finishes listener hears about these jobs
        from before their commit, so the wait that follows need not read their rows first
        (the look before the wait is for jobs that may have finished unheard)."""
        await self._listen(self.finishes, 5.0)
        ids = [new.id for new in jobs]
        if not self.finishes.expect(ids):
            return await self.enqueue(jobs)
        try:
            results = await self.enqueue(jobs)
        except BaseException:
            self.finishes.unexpect(ids)
            raise
        # A duplicate is answered with the live job: that one was not expected.
        self.finishes.unexpect([i for i, r in zip(ids, results, strict=True) if r.id != i])
        return results

    async def _enqueue_alone(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """One enqueue statement on a pooled connection: one commit (see group.py)."""
        pool = self._pool
        if pool is None:
            raise BackendError(f"the PostgreSQL backend for {self.url} is not open")
        try:
            spare = await self._take(pool, alone=len(jobs) == 1)
            try:
                async with asyncio.timeout(self.call_timeout):
                    out = await self._enqueue(spare.cur, jobs)
            except BaseException:
                await pool.putconn(spare.conn)  # the pool resets or discards it
                raise
            if len(jobs) == 1:
                await self._give(pool, spare)
            else:  # a shared write's connection: back to the pool (see docs/profiles.md)
                await pool.putconn(spare.conn)
            return out
        except psycopg.DataError as exc:
            raise _nul_refused(exc) from None
        except PoolTimeout as exc:
            raise self._error(exc, "waiting for a pooled connection") from exc
        except TimeoutError as exc:
            raise self._error(
                TimeoutError(f"no answer in {self.call_timeout:g}s (URL call_timeout=)"),
                "enqueueing",
            ) from exc
        except psycopg.OperationalError as exc:
            await self._check_pool(pool)
            raise self._error(exc, "enqueueing") from exc

    async def enqueue_claimed(self, items: Sequence[tuple[Claim, NewJob]]) -> list[Claimed]:
        if not items:
            return []
        return await self._claimed.submit(items)

    async def enqueue_claimed_with(
        self,
        items: Sequence[tuple[Claim, NewJob]],
        kv: Mapping[str, str],
        events: Sequence[Event],
        counters: Sequence[tuple[str, int, float | None]] = (),
    ) -> list[Claimed]:
        """The keys, the events, the counters and the claimed jobs in one statement (one
        commit); a counter's adds are summed into one row first (an upsert touches a row
        once)."""
        sums = _counter_sums(counters)
        return await self._enqueue_claimed_many(
            items,
            self._q.enqueue_claimed_with,
            (
                arrays.texts(list(kv)),
                arrays.texts(list(kv.values())),
                *_publish_params(events),
                list(sums),
                [v[0] for v in sums.values()],
                [v[1] for v in sums.values()],
            ),
        )

    async def _enqueue_claimed_many(
        self,
        items: Sequence[tuple[Claim, NewJob]],
        query: str | None = None,
        before: tuple[Any, ...] = (),
    ) -> list[Claimed]:
        """enqueue_claimed in one statement (one commit); ``query`` another form of it,
        whose own parameters ``before`` go first. A key asked twice goes in once: its
        first ask is answered as it would be in turn, the later ones get nothing."""
        first: dict[str, int] = {}
        for i, (claim, _) in enumerate(items):
            first.setdefault(claim.key, i)
        rows = await self._rows(
            query or self._q.enqueue_claimed,
            (*before, *_claim_params([items[i] for i in first.values()])),
        )
        claimed, written = _claim_answers(rows)
        return [
            (False, None) if first[claim.key] != i else _claimed(claim.key in claimed, new, written)
            for i, (claim, new) in enumerate(items)
        ]

    async def _check_pool(self, pool: AsyncConnectionPool[AnyConn]) -> None:
        """After a lost connection: a dropped server leaves every idle connection dead, the
        kept one too, so test them all now and the next calls get fresh ones instead of
        failing one by one."""
        spare, self._spare = self._spare, None
        with contextlib.suppress(Exception):
            if spare is not None:
                await pool.putconn(spare.conn)
            await pool.check()

    async def enqueue_in(self, conn: AnyConn, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Enqueue on the application's own connection, inside its transaction if one is
        open: the jobs (and their wake-up) exist only if that transaction commits."""
        if not isinstance(conn, psycopg.AsyncConnection):
            raise TypeError(
                f"enqueue_in needs a psycopg.AsyncConnection, got {type(conn).__name__}"
            )
        return await self._enqueue(conn.cursor(binary=True), jobs, packed=False) if jobs else []

    async def _enqueue(
        self, cur: AnyCursor, jobs: Sequence[NewJob], packed: bool = True
    ) -> list[EnqueueResult]:
        """``packed``: ``cur`` is on one of the pool's connections (its dumpers take packed
        arrays)."""
        if len(jobs) == 1 and jobs[0].dedup_key is None:
            # The request handler's call: one row back, or a refusal raised.
            new = jobs[0]
            await cur.execute(self._q.enqueue[False, True], enqueue_row(new))
            row = await cur.fetchone()
            if row is not None:
                return [EnqueueResult(new.id, True, _SCHED if row[1] else _Q)]
        out: list[EnqueueResult | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        # A job whose dedup key is held is answered with the live holder. If that holder
        # ends between our insert and our look-up, insert again (bounded: it is a race).
        for _ in range(5):
            batch = [jobs[i] for i in pending]
            keyed = any(new.dedup_key is not None for new in batch)
            params: Sequence[Any]
            if len(batch) == 1:
                params = enqueue_row(batch[0])
            else:
                params = enqueue_params(batch)
                if packed:
                    params = arrays.packed(params)
            query = self._q.enqueue[keyed, len(batch) == 1]
            await cur.execute(query, params)
            created = {row[0]: bool(row[1]) for row in await cur.fetchall()}
            missing = []
            for i in pending:
                new = jobs[i]
                if new.id in created:
                    out[i] = EnqueueResult(new.id, True, _SCHED if created[new.id] else _Q)
                else:
                    missing.append(i)
            if not missing:
                break
            missing = await self._replace(cur, jobs, missing, out)
            holds = Counter((jobs[i].queue, jobs[i].dedup_key) for i in missing
                            if jobs[i].hold and jobs[i].dedup_key is not None)  # fmt: skip
            keys = list({(jobs[i].queue, jobs[i].dedup_key) for i in missing
                         if jobs[i].dedup_key is not None} - set(holds))  # fmt: skip
            await cur.execute(self._q.live_by_key, ([q for q, _ in keys], [k for _, k in keys]))
            live = {(row[0], row[1]): row[2:] for row in await cur.fetchall()}
            if holds:
                await cur.execute(
                    self._q.hold_by_key,
                    ([q for q, _ in holds], [k for _, k in holds], list(holds.values())),
                )
                live.update({(row[0], row[1]): row[2:] for row in await cur.fetchall()})
            pending = []
            for i in missing:
                found = live.get((jobs[i].queue, jobs[i].dedup_key))
                if found is None:
                    pending.append(i)
                    continue
                job_id, state, scheduled = found
                st = _A if state == "active" else (_SCHED if scheduled else _Q)
                out[i] = EnqueueResult(job_id, False, st)
            if not pending:
                break
        if any(r is None for r in out):
            raise BackendError("enqueue lost a race on a dedup key five times; try again")
        return out  # type: ignore[return-value]

    async def _replace(
        self,
        cur: AnyCursor,
        jobs: Sequence[NewJob],
        missing: list[int],
        out: list[EnqueueResult | None],
    ) -> list[int]:
        """Debounce: a duplicate asking to replace gives its payload to a live holder that
        has not started yet (in batch order, so the last one wins)."""
        left = []
        for i in missing:
            new = jobs[i]
            if not new.replace:
                left.append(i)
                continue
            await cur.execute(
                self._q.replace,
                (new.data, new.priority, new.max_attempts, new.max_stalls, new.timeout,
                 int(new.hold),
                 new.at, float(new.delay or 0.0), new.queue, new.dedup_key),
            )  # fmt: skip
            row = await cur.fetchone()
            if row is None:
                left.append(i)  # the holder is running (or gone): answer as a duplicate
            else:
                out[i] = EnqueueResult(row[0], False, _SCHED if row[1] else _Q, True)
        return left

    # -- consuming ---------------------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        leases: list[Lease] = []
        for queue in queues:  # the worker asks one queue at a time: one round trip
            want = limit - len(leases)
            if want <= 0:
                break
            heard = self.listener.heard(queue)  # before the claim's snapshot is taken
            if self._drained(queue, heard):
                continue  # its last claim took every job due, and nothing came since
            rows = await self._rows(
                self._q.claim, {"q": queue, "n": want, "w": worker, "lease": float(lease)}
            )
            got = [Lease(*row[:11]) for row in rows if row[0] is not None]
            if len(got) < want and heard is not None:  # the queue had no more due
                due = rows[0][11] if rows else None
                self._due[queue] = (heard, None if due is None else time.monotonic() + due)
                if got:
                    self._short.add(queue)
            else:
                self._due.pop(queue, None)
            leases.extend(got)
        return leases

    def _drained(self, queue: str, heard: tuple[int, int] | None) -> bool:
        """Whether the claim that follows one that came back short (every job due then
        taken) would find nothing: this listener has heard nothing of the queue since
        that claim was sent (anything enqueued, retried or reclaimed after its snapshot
        is NOTIFYed) and no scheduled job has come due. A worker whose claim of one job
        left slots free then waits at once, without an empty claim's statement in the
        middle of that job's run. Once per short claim: the claim after the wait is sent
        (a job freed without a NOTIFY, e.g. one skipped as locked by a claim that then
        failed, is found by it as before)."""
        if queue not in self._short:
            return False
        self._short.discard(queue)
        known = self._due.get(queue)
        if known is None or heard is None or known[0] != heard:
            return False
        return known[1] is None or known[1] > time.monotonic()

    async def renew(self, leases: Sequence[Lease]) -> RenewResult:
        if not leases:
            return RenewResult(frozenset(), frozenset())
        rows = await self._rows(
            self._q.renew,
            ([x.job_id for x in leases], [x.token for x in leases], [x.lease for x in leases]),
        )
        kept = {row[0] for row in rows}
        lost = frozenset(x.job_id for x in leases if x.job_id not in kept)
        cancel = frozenset(row[0] for row in rows if row[1])
        return RenewResult(lost, cancel)

    async def finish(self, items: Sequence[tuple[Lease, Outcome]]) -> list[bool]:
        if not items:
            return []
        ids = [lease.job_id for lease, _ in items]
        doc: list[dict[str, Any]] = [
            {
                "id": lease.job_id,
                "token": lease.token,
                "kind": out.kind,
                "result": None if out.result is None else _b64(out.result),
                "error": out.error,
                "delay": float(out.delay),
                "refund": out.refund,
                "logs": out.logs or None,
                "dropped": out.logs_dropped,
                "again": out.call is not None,  # sent before: only then can it be a replay
                "call": out.call or _new_call(out),
            }
            for lease, out in items
        ]
        stepped = False  # an outcome carries a flow step's own events
        closing: list[tuple[dict[str, Any], Outcome]] = []  # the outcomes with a run's end
        for d, (_, out) in zip(doc, items, strict=True):
            if out.events:
                d["events"] = [_event_doc(e) for e in out.events]
                stepped = True
            end = out.end
            if end is not None:
                out.ended = None  # until this finish writes it
                if out.kind == "completed":
                    d["rend"] = [
                        *(end.key, end.mark, end.live, end.name),
                        *(_event_doc(end.event), end.entry),
                    ]
                    closing.append((d, out))
        caps = (self.max_log_lines, self.max_log_bytes)
        logged, again = any(d["logs"] is not None for d in doc), any(d["again"] for d in doc)
        shape = (logged, again, stepped, bool(closing))
        followed = [
            (lease.job_id, out) for lease, out in items if out.followups and out.kind == "completed"
        ]
        if not followed:
            rows = await self._rows(self._q.finish[shape], (*caps, _dumps(doc)))
            if not closing:
                return _accepted(ids, {row[0] for row in rows})
            done = {row[1] for row in rows if row[0] == "f"}
            await self._ends_taken(closing, done, rows)
            return _accepted(ids, done)
        # The follow-ups of every item, each with its owner's id: written if it is finished.
        # A key asked twice goes once (one statement cannot upsert a row twice).
        first: dict[str, tuple[str, tuple[Claim, NewJob]]] = {}
        for job_id, out in followed:
            for item in out.followups:
                first.setdefault(item[0].key, (job_id, item))
        owners = arrays.texts([job_id for job_id, _ in first.values()])
        params = _claim_params([item for _, item in first.values()], owners)
        rows = await self._rows(self._q.finish_followups[shape], (*caps, _dumps(doc), *params))
        done = {row[1] for row in rows if row[0] == "f"}
        if closing:
            await self._ends_taken(closing, done, rows)
        claimed, written = _claim_answers(rows)
        for job_id, out in followed:
            out.followups_claimed = None
            if job_id in done:
                out.followups_claimed = [
                    _claimed(item[0].key in claimed, item[1], written)
                    if first[item[0].key][1] is item
                    else (False, None)
                    for item in out.followups
                ]
        return _accepted(ids, done)

    async def _ends_taken(
        self, closing: Sequence[tuple[dict[str, Any], Outcome]], done: set[str], rows: Any
    ) -> None:
        """A finish's answers for the runs' ends it carried (its ('e', id, deleted) rows)
        in each written outcome's ``ended``. An outcome sent before may be a replay, which
        writes nothing again and answers no row: its end is recovered by a read (its mark,
        a time to the microsecond, is its own)."""
        taken = {row[1]: bool(row[2]) for row in rows if row[0] == "e"}
        for d, out in closing:
            job_id = d["id"]
            if job_id not in done:
                continue
            if job_id in taken:
                out.ended = (True, taken[job_id])
            elif d["again"] and out.end is not None:
                end = out.end
                ours = await self.kv_get(end.key) == end.mark
                out.ended = (ours, ours and await self.kv_get(end.live) is None)
            else:
                out.ended = (False, False)

    async def update(
        self,
        lease: Lease,
        progress: Any = None,
        logs: Sequence[dict[str, Any]] = (),
        dropped: int = 0,
    ) -> bool:
        params = {
            "p": None if progress is None else _dumps(progress),
            "l": _dumps(list(logs)) if logs else None,
            "d": dropped,
            "ml": self.max_log_lines,
            "mb": self.max_log_bytes,
            "id": lease.job_id,
            "t": lease.token,
        }
        rows = await self._rows(self._q.update, params)
        return bool(rows[0][0])

    async def reclaim_expired(self) -> list[str]:
        rows = await self._rows(self._q.reclaim, ())
        if time.monotonic() - self._last_sweep > _SWEEP_EVERY:
            self._last_sweep = time.monotonic()
            await self.sweep()
        return [row[0] for row in rows]

    async def sweep(self) -> None:
        """Bound the event log and delete expired keys, counters and worker records."""
        first, *rest = self.sql.sweep()
        hold = {
            "keep": self.max_events,
            "held": self.max_events * HOLD_FACTOR,
            "hold": HOLD_PREFIX + "%",
        }
        await self._rows(first, hold)
        for statement in rest:
            await self._rows(statement, ())

    @staticmethod
    async def _listen(listener: Listener, timeout: float) -> None:
        """LISTEN from the first wait on, not from open(): a process that only enqueues
        would otherwise be sent a NOTIFY for each of its own jobs (a wake-up of the
        server's listening process and of this one per enqueue, for nothing)."""
        if not listener.started:
            await listener.start(wait=min(5.0, max(timeout, 0.0)))

    async def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        await self._listen(self.listener, timeout)
        # Watch first, then look: a NOTIFY after the look wakes the watcher.
        fut = self.listener.watch_jobs(queues)
        try:
            due = self._due_after_claims(queues)
            if due is False:
                rows = await self._rows(self._q.next_due, (list(queues),))
                due = rows[0][0] if rows else None
            if due is not None:
                timeout = min(timeout, max(0.0, float(due)))
            if timeout <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(fut)
        finally:
            self.listener.forget(fut)

    def _due_after_claims(self, queues: Sequence[str]) -> float | Literal[False] | None:
        """Seconds until the next of ``queues``' jobs is due (None: none) as the last empty
        claim of each queue found it, if this listener has heard nothing of those queues
        since that claim was sent: anything enqueued, retried or reclaimed after its
        snapshot is NOTIFYed after it, so it wakes the watch already set. False: ask."""
        soonest: float | None = None
        for queue in queues:
            known = self._due.get(queue)
            if known is None or known[0] != self.listener.heard(queue):
                return False
            if known[1] is not None and (soonest is None or known[1] < soonest):
                soonest = known[1]
        return None if soonest is None else soonest - time.monotonic()

    async def wait_finished(self, ids: Collection[str], timeout: float) -> list[Job]:
        wanted = list(ids)
        if not wanted:
            return []
        await self._listen(self.finishes, timeout)
        fut, records = self.finishes.watch_done(wanted)
        try:
            # Watch first, then look: only at jobs this listener may not have heard about.
            unread, heard_early = self.finishes.take(wanted)
            done = _records(heard_early)
            if len(done) < len(heard_early):  # a record that did not decode: read its row
                got = {j.id for j in done}
                unread += [i for i in heard_early if i not in got]
            if unread:
                done += await self._finished(unread)
            if done or timeout <= 0:
                return done
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(fut)
            except TimeoutError:
                return []
            heard = _records(records)
            return heard if heard else await self._finished(wanted)
        finally:
            self.finishes.forget(fut)

    async def _finished(self, ids: list[str]) -> list[Job]:
        ids = [i for i in ids if "\x00" not in i]
        return await self._jobs(await self._rows(self._q.finished, (ids,)))

    async def _jobs(self, rows: list[tuple[Any, ...]]) -> list[Job]:
        out = []
        for row in rows:
            try:
                out.append(job_of(row))
            except ValueError:
                out.append(await self._quarantine(row))
        return out

    async def _quarantine(self, row: tuple[Any, ...]) -> Job:
        """A row whose data or result is not JSON (written by something else, or damaged)
        ends failed, once, with the raw bytes in the error; the data column keeps them."""
        fixed, error, clear = salvage(row)
        if error is None:
            return job_of(tuple(fixed))  # quarantined before
        params = {"id": row[0], "e": _dumps(error), "clear": clear}
        done = await self._rows(self._q.quarantine, params)
        if not done:
            return job_of(tuple(fixed))  # deleted meanwhile
        after = list(done[0][:-1])  # without the state it had (for the counts)
        after[4] = fixed[4]
        return job_of(tuple(after))

    # -- inspecting and controlling ----------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        if "\x00" in job_id:  # in no stored id (PostgreSQL text cannot hold one)
            return None
        rows = await self._rows(self._q.get, (job_id,))
        return (await self._jobs(rows))[0] if rows else None

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        wanted = [i for i in ids if "\x00" not in i]
        if not wanted:
            return []
        return await self._jobs(await self._rows(self._q.get_many, (wanted,)))

    async def query(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 50,
        offset: int = 0,
        after: JobKey | None = None,
    ) -> list[Job]:
        if "\x00" in (queue or "") or "\x00" in (task or ""):
            return []  # no stored name holds a NUL
        extra = "AND task = %(task)s" if task is not None else ""
        stored = None if state is None else state.value
        if state is JobState.SCHEDULED:
            stored, extra = "queued", extra + " AND run_at > now()"
        elif state is JobState.QUEUED:
            extra += " AND run_at <= now()"
        params: dict[str, Any] = {
            "queue": queue,
            "task": task,
            "limit": max(0, limit),
            "offset": max(0, offset),
        }
        if after is not None:  # the anchor's stored time while it exists: exact, not rounded
            extra += (
                f" AND (created_at, id) < (COALESCE((SELECT created_at FROM {self.sql.s}.jobs "
                "WHERE id = %(after)s), to_timestamp(%(created)s)), %(after)s)"
            )
            params |= {"after": after.id, "created": after.created}
        rows = await self._rows(self.sql.newest(queue is not None, stored, extra), params)
        return await self._jobs(rows)

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for q in queues or ():
            out[q] = dict.fromkeys(JobState, 0)
        # The counters (migration 0010) give queued, active and finished; a queued job
        # whose run_at is ahead is scheduled, a matter of time that no write marks.
        if queues is None:
            rows = await self._rows(self._q.counts_all, ())
        else:
            names = [q for q in queues if "\x00" not in q]
            rows = await self._rows(self._q.counts_of, {"q": names})
        pieces = 0
        for queue, state, n, parts in rows:
            pieces += parts
            if not n:
                continue
            per = out.setdefault(queue, dict.fromkeys(JobState, 0))
            if state == "scheduled":
                per[_Q] -= int(n)
            per[STATES[state]] += int(n)
        if pieces > _FOLD_AT:
            await self._rows(self._q.fold_counts, ())
        return out

    async def cancel(self, job_id: str) -> JobState | None:
        if "\x00" in job_id:
            return None
        rows = await self._rows(self._q.cancel, (job_id,))
        if rows:
            return STATES[rows[0][0]]
        rows = await self._rows(self._q.state_of, (job_id,))
        if not rows:
            return None
        state, scheduled = rows[0]
        return _SCHED if state == "queued" and scheduled else STATES[state]

    async def retry(self, job_id: str, data: bytes | None = None, by: str | None = None) -> bool:
        if "\x00" in job_id:
            return False
        query = self._q.retry
        params: dict[str, object] = {"id": job_id}
        if data is not None:
            found = await self._rows(
                f"SELECT data FROM {self.sql.s}.jobs WHERE id = %(id)s", params
            )
            if not found:
                return False
            old = bytes(found[0][0])
            note = orjson.dumps(retried(old, by)).decode()
            query = self._q.edit
            params |= {"data": data, "old": old, "note": note}
        try:
            rows = await self._rows(query, params)
        except psycopg.errors.UniqueViolation:
            return False  # a newer live job took the dedup key meanwhile
        return bool(rows)

    async def purge(
        self,
        *,
        states: Collection[JobState],
        older_than: float | None = None,
        keep_last: int | None = None,
        queue: str | None = None,
        retention: bool = False,
    ) -> int:
        if older_than is None and keep_last is None and not retention:
            return 0
        s = self.sql.s
        total = 0
        for state in sorted({JobState(x) for x in states} & {JobState(x) for x in _FINISHED}):
            scope_params: list[Any] = [state.value] + ([] if queue is None else [queue])
            if older_than is not None:
                query = purge_older(s, state.value, queue is not None, retention)
                rows = await self._rows(query, {"queue": queue, "age": float(older_than)})
                total += int(rows[0][0])
            if keep_last is not None:
                query = purge_past_keep(s, state.value, queue is not None, retention)
                rows = await self._rows(query, {"queue": queue, "keep": max(0, keep_last)})
                total += int(rows[0][0])
            if retention:
                rows = await self._rows(purge_own(s, queue is not None), scope_params)
                total += int(rows[0][0])
        return total

    async def release(self, ids: Collection[str]) -> None:
        wanted = [i for i in ids if "\x00" not in i]
        if wanted:
            await self._rows(self._q.release, (wanted,))
            await self._rows(self._q.release_drop, (wanted,))

    async def pause(self, queue: str) -> None:
        await self._rows(self._q.pause, (queue,))

    async def resume(self, queue: str) -> None:
        await self._rows(self._q.resume, {"q": queue})

    async def paused(self) -> set[str]:
        return {row[0] for row in await self._rows(self._q.paused)}

    # -- coordination ------------------------------------------------------------------
    async def set_if_absent(
        self, key: str, value: str, ttl: float | None = None, unless: str | None = None
    ) -> bool:
        (won,) = await self._claims.submit([(key, value, _ttl(ttl), unless)])
        return won

    async def _claim_many(self, claims: Sequence[_Claim]) -> list[bool]:
        """set_if_absent calls in one statement. A key asked twice goes in once: its first
        ask wins as it would in turn, the later ones lose."""
        if len(claims) == 1:
            key, value, ttl, unless = claims[0]
            if unless is None:
                params = {"k": key, "v": value, "ttl": ttl}
                return [bool(await self._rows(self._q.set_if_absent, params))]
            params = {"k": key, "v": value, "ttl": ttl, "u": unless}
            return [bool(await self._rows(self._q.set_if_absent_unless, params))]
        first: dict[str, int] = {}
        for i, claim in enumerate(claims):
            first.setdefault(claim[0], i)
        sent = [claims[i] for i in first.values()]
        rows = await self._rows(
            self._q.set_if_absent_many,
            {
                "k": [c[0] for c in sent],
                "v": [c[1] for c in sent],
                "ttl": [c[2] for c in sent],
                "u": [c[3] for c in sent],
            },
        )
        won = {row[0] for row in rows}
        return [c[0] in won and first[c[0]] == i for i, c in enumerate(claims)]

    async def kv_get(self, key: str) -> str | None:
        rows = await self._rows(self._q.kv_get, (key,))
        return str(rows[0][0]) if rows else None

    async def kv_get_many(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        rows = await self._rows(self._q.kv_get_many, {"k": arrays.texts(list(keys))})
        return {str(k): str(v) for k, v in rows}

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._rows(self._q.kv_set, (key, value, _ttl(ttl)))

    async def kv_delete(self, key: str, value: str | None = None) -> bool:
        (gone,) = await self._deletes.submit([(key, value)])
        return gone

    async def _delete_many(self, asks: Sequence[tuple[str, str | None]]) -> list[bool]:
        """kv_delete calls in one statement; a key asked twice goes alone, in turn (the
        second ask's answer depends on the first's)."""
        if len(asks) == 1 or len({k for k, _ in asks}) < len(asks):
            return [bool(await self._rows(self._q.kv_delete, {"k": k, "v": v})) for k, v in asks]
        rows = await self._rows(
            self._q.kv_delete_many, {"k": [k for k, _ in asks], "v": [v for _, v in asks]}
        )
        gone = {row[0] for row in rows}
        return [k in gone for k, _ in asks]

    async def kv_extend(self, held: Mapping[str, str], ttl: float) -> set[str]:
        if not held:
            return set()
        params = {"k": list(held), "v": list(held.values()), "ttl": float(ttl)}
        return {str(row[0]) for row in await self._rows(self._q.kv_extend, params)}

    async def kv_scan(
        self,
        prefix: str,
        limit: int | None = None,
        *,
        reverse: bool = False,
        after: str | None = None,
    ) -> dict[str, str]:
        ranged = bool(prefix) and ord(prefix[-1]) < 0x7F  # the next character is ASCII too
        params: dict[str, Any] = {"p": prefix, "after": after, "limit": limit}
        if ranged:
            params["end"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        if limit is None and after is None and not reverse:
            sql = self._q.kv_scan if ranged else self._q.kv_scan_all
        else:
            sql = self._q.kv_page[ranged, reverse, after is not None, limit is not None]
        return {k: v for k, v in await self._rows(sql, params)}

    async def counter_add(self, key: str, n: int, ttl: float | None = None) -> int:
        rows = await self._rows(self._q.counter_add, {"k": key, "n": n, "ttl": _ttl(ttl)})
        return int(rows[0][0])

    async def counter_add_many(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        """One statement: the adds to a key are summed into one row (an upsert touches a
        row once), with the first ttl given (what the adds one by one would leave), and
        each add's own value is taken back from the key's last."""
        if len(items) <= 1:
            return [await self.counter_add(key, n, ttl) for key, n, ttl in items]
        sums = _counter_sums(items)
        params = {
            "k": list(sums),
            "n": [v[0] for v in sums.values()],
            "ttl": [v[1] for v in sums.values()],
        }
        last = {str(k): int(v) for k, v in await self._rows(self._q.counter_add_many, params)}
        out = [0] * len(items)
        for i in range(len(items) - 1, -1, -1):  # backwards: each value before the adds after
            key, n, _ = items[i]
            out[i] = last[key]
            last[key] -= n
        return out

    # -- events and workers ------------------------------------------------------------
    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        await self._rows(self._q.publish, _publish_params(events))

    async def run_events(self, run: str, after: int = 0, limit: int = 1000) -> list[Event]:
        start = await self._position(after)
        if start is None:
            return []
        rows = await self._rows(self._q.run_events, (run, *positions.split(start), max(0, limit)))
        return _events(rows)

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events after the position ``after`` (``Event.id`` is a position: positions.py)."""
        start = await self._position(after)
        if start is None:
            return []
        rows = await self._rows(self._q.events, (*positions.split(start), max(0, limit)))
        return _events(rows)

    async def _position(self, after: int) -> int | None:
        """``after`` as a position; a plain id saved before the upgrade is placed in the
        (xid, id) order (None: no event past it yet)."""
        if not positions.legacy(after):
            return after
        rows = await self._rows(self._q.legacy_position, (after,))
        xid = rows[0][0]
        return None if xid is None else positions.join(int(xid), after)

    async def job_events(self, job_id: str, limit: int = JOB_EVENTS) -> list[Event]:
        rows = await self._rows(self._q.job_events, (job_id, max(0, limit)))
        return sorted(_events(rows), key=lambda e: e.id)

    async def events_head(self) -> int:
        # One index probe, not the walk: the newest event below every transaction in flight.
        rows = await self._rows(self._q.events_head)
        return positions.join(int(rows[0][0]), int(rows[0][1])) if rows else 0

    async def beat(self, info: WorkerInfo, ttl: float) -> None:
        body = {
            "id": info.id, "host": info.host, "pid": info.pid, "queues": info.queues,
            "started_at": info.started_at, "active": info.active, "processed": info.processed,
            "tasks": info.tasks, "paused": info.paused, "flows": info.flows,
        }  # fmt: skip
        rows = await self._rows(self._q.beat, (info.id, _dumps(body), float(ttl)))
        info.last_seen = float(rows[0][0])

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._rows(self._q.workers)
        out = []
        for body, last_seen in rows:
            out.append(
                WorkerInfo(
                    body["id"],
                    body["host"],
                    int(body["pid"]),
                    dict(body["queues"]),
                    float(body["started_at"]),
                    int(body.get("active", 0)),
                    int(body.get("processed", 0)),
                    float(last_seen),
                    list(body.get("tasks", ())),
                    bool(body.get("paused", False)),
                    list(body.get("flows", ())),
                )
            )
        return out

    async def remove_worker(self, worker_id: str) -> None:
        await self._rows(f"DELETE FROM {self.sql.s}.workers WHERE id = %s", (worker_id,))


async def _configure(conn: AnyConn) -> None:
    # Prepared from the first call, not the sixth: each of the first five was parsed and
    # planned again, per connection and statement (docs/decisions.md).
    conn.prepare_threshold = 0
    set_json_loads(orjson.loads, conn)
    arrays.register(conn.adapters)


def _records(payloads: Mapping[str, str]) -> list[Job]:
    """The jobs of the record channel's payloads ('<id> <JSON array>', see statements.py);
    one that does not decode is left out, for the read of the row to find (and quarantine)."""
    out = []
    for payload in payloads.values():
        try:
            row = orjson.loads(payload.partition(" ")[2])
            row[4] = a2b_base64(row[4])
            if row[13] is not None:
                row[13] = a2b_base64(row[13])
            out.append(job_of(tuple(row)))
        except (ValueError, TypeError, IndexError):  # binascii.Error is a ValueError
            continue
    return out


def _ttl(ttl: float | None) -> float | None:
    return None if ttl is None else float(ttl)


_Claim = tuple[str, str, float | None, str | None]  # key, value, ttl, unless


def _events(rows: list[Any]) -> list[Event]:
    """Rows of (id, xid, type, job, task, queue, data, at): each event's id its position."""
    return [
        Event(type_, job_id, task, queue, data or {}, float(at), positions.join(xid, id_))
        for id_, xid, type_, job_id, task, queue, data, at in rows
    ]


def _nul_refused(exc: psycopg.DataError) -> Exception:
    """PostgreSQL text cannot hold NUL: say which input to fix instead of a driver error."""
    if "NUL" not in str(exc):
        return exc
    return ConfigError(
        "PostgreSQL cannot store a NUL character (\\x00) in text: remove it from the dedup "
        "key, singleton key or key-value key you passed"
    )


def _unreachable(exc: BaseException) -> bool:
    """The server could not be reached or the connection broke (BackendUnavailable), as
    against a refusal (a role, a password, a database) or a statement's own error."""
    if isinstance(exc, PoolTimeout):
        return True  # no connection came: the pool could not make one, or all stayed busy
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    if state is None:
        # libpq's connection failures carry no SQLSTATE; the server's refusals say FATAL.
        return "FATAL:" not in str(exc)
    return state.startswith("08") or state in ("57P01", "57P02", "57P03")
