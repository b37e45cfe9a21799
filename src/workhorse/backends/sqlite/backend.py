"""The SQLite backend: one WAL file that several processes on one machine share.

Every call runs on the backend's database thread (see connection). Internally a job delayed
into the future is ``scheduled``; a claim first promotes the due ones to ``queued``, so the
claim index holds only jobs that can run now and a claim stays one index probe however many
jobs wait for later. The public state is derived as in memory: ``scheduled`` is a queued job
whose ``run_at`` is still ahead. Waiting for another process's commit is watcher's job.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson

from workhorse.backends import loglines
from workhorse.backends.base import JOB_EVENTS, Backend, Capabilities, RenewResult
from workhorse.backends.sqlite import coordination
from workhorse.backends.sqlite.connection import Database, path_from_url
from workhorse.backends.sqlite.events import (
    EventLog,
    EventRow,
    NumberedRow,
    RunEventRow,
    event_row,
    next_id,
    published_rows,
    with_published,
)
from workhorse.backends.sqlite.events import read as read_events
from workhorse.backends.sqlite.events import read_job as read_job_events
from workhorse.backends.sqlite.events import read_run as read_run_events
from workhorse.backends.sqlite.reads import any_expired, counts, due_in, listing
from workhorse.backends.sqlite.reclaim import reclaim
from workhorse.backends.sqlite.rows import decode, public_state, salvage, to_json
from workhorse.backends.sqlite.statements import (
    CLAIM,
    END,
    INSERT,
    JOB_COLS,
    LIVE,
    OWN_RETENTION,
    OWNED,
    OWNED_LOGS,
    PROMOTE,
    PURGE_CHUNK,
    RENEW,
    REQUEUE,
    SET_LOGS,
    insert_rows,
    purge_select,
)
from workhorse.backends.sqlite.tally import Move
from workhorse.backends.sqlite.tally import write as tally
from workhorse.backends.sqlite.watcher import Signal, Watcher
from workhorse.errors import BackendError
from workhorse.events import recorded, retried
from workhorse.job import (
    FINISHED_STATES,
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
    RunEnd,
    WorkerInfo,
)
from workhorse.urls import check_options

# The tables drop() empties: all but wh_meta, whose seq is a floor of event ids (next_id).
_TABLES = ("wh_jobs", "wh_counts", "wh_events", "wh_paused", "wh_kv", "wh_counters", "wh_workers")


_MAX_ID = 2**63 - 1  # SQLite's integers


class SQLiteBackend(Backend):
    capabilities = Capabilities(
        durable=True,
        multi_process=True,
        multi_machine=False,
        finish_followups=True,
        finish_events=True,
        finish_ends=True,
    )

    def __init__(
        self,
        url: str = "sqlite:///.workhorse/workhorse.db",
        *,
        clock: Callable[[], float] = time.time,
        max_events: int | None = None,
        lock_timeout: float | None = None,
        poll: float | None = None,
    ) -> None:
        self.url = url
        self.path = path_from_url(url)
        params = dict(parse_qsl(url.partition("?")[2]))
        check_options(params, ("max_events", "lock_timeout", "poll", "watch"), "SQLite")
        self._clock = clock
        # The durable event log keeps this many newest events.
        self.max_events = max_events or int(params.get("max_events", 100_000))
        # How long a write waits for another process's write transaction before failing.
        self.lock_timeout = lock_timeout or float(params.get("lock_timeout", 60.0))
        # How often a waiter looks at the -wal file for another process's commits.
        self.poll = poll or float(params.get("poll", 0.001))
        # Linux: inotify wakes waiters on another process's commit at once (watch=false:
        # polling only, e.g. where a folder's inotify events are not delivered).
        self.watch = params.get("watch", "true").lower() not in ("0", "false", "no", "off")
        self._db = Database(self.path, self.lock_timeout)
        self._events = EventLog(self.max_events)
        self._work = Signal()  # this object wrote something a worker may claim
        self._done = Signal()  # this object finished (or cancelled) a job
        self._watcher = Watcher(self.path, self.poll, self.watch, lambda: self._db.is_open)
        self._last_sweep = 0.0

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        if not self._db.is_open:
            return
        self._watcher.close()
        await self._db.close()

    async def drop(self) -> None:
        """Delete every row (the test fixture's clean-up); the file stays."""
        if not self._db.is_open:
            return

        def wipe(conn: sqlite3.Connection) -> None:
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table}")

        await self._db.write(wipe)

    async def now(self) -> float:
        return self._clock()

    # -- rows ------------------------------------------------------------------------
    def _to_job(self, conn: sqlite3.Connection, row: Sequence[Any], now: float) -> Job:
        try:
            return decode(row, now)
        except (ValueError, TypeError):
            return self._salvage(conn, row, now)

    def _salvage(self, conn: sqlite3.Connection, row: Sequence[Any], now: float) -> Job:
        """The slow path for a row that does not decode: quarantine it as failed, once,
        with the raw bytes of each bad column in the error, and return what can be read."""
        fixed, error, reset = salvage(row)
        if error is None:
            return decode(fixed, now)  # done before: the data column keeps the bytes
        self._db.tx_on(conn, self._quarantine_tx, row[0], error, reset)
        fixed[3], fixed[11], fixed[14], fixed[18] = "failed", now, to_json(error), None
        return decode(fixed, now)

    def _quarantine_tx(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        error: dict[str, Any],
        reset: dict[str, Any],
    ) -> None:
        now = self._clock()
        was = conn.execute("SELECT state FROM wh_jobs WHERE id = ?", (job_id,)).fetchone()
        sets = "".join(f", {name} = ?" for name in reset)  # names from rows.RESETTABLE only
        row = conn.execute(
            f"UPDATE wh_jobs SET state = 'failed', error = ?, finished_at = ?, token = NULL, "
            f"expires_at = NULL, cancel_requested = 0{sets} WHERE id = ? "
            "RETURNING task, queue, attempts",
            (to_json(error), now, *reset.values(), job_id),
        ).fetchone()
        if row is not None:
            tally(conn, [(row[1], was[0], "failed", 1)])
            self._events.add(
                conn,
                [event_row("job.failed", job_id, row[0], row[1], now,
                            {"attempt": row[2], "error": error})],
            )  # fmt: skip

    # -- producing -------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        if not jobs:
            return []
        out = await self._db.write(self._enqueue_tx, jobs)
        self._work.fire()
        return out

    def _enqueue_tx(self, conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        now = self._clock()
        first = next_id(conn)
        out: list[EnqueueResult] = []
        plain: list[tuple[Any, ...]] = []
        events: list[NumberedRow] = []  # numbered as added: a job's row holds its event's id
        moves: list[Move] = []
        entered: dict[tuple[str, str], int] = {}  # new jobs by (queue, state)
        for new in jobs:
            event = first + len(events)
            row, state, run_at = _job_row(new, now, event)
            if new.dedup_key is None:
                plain.append(row)
            else:
                # Jobs with a key go one by one: a later job in this batch may share it.
                cur = conn.execute(INSERT + " ON CONFLICT DO NOTHING", row)
                if cur.rowcount != 1:
                    out.append(self._duplicate(conn, new, now, events, event, moves))
                    continue
            entered[new.queue, state] = entered.get((new.queue, state), 0) + 1
            events.append((event, "job.queued", new.id, new.task, new.queue, None, now))
            out.append(EnqueueResult(new.id, True, public_state(state, run_at, now)))
        if plain:
            insert_rows(conn, INSERT, plain)
        moves += [(queue, None, state, n) for (queue, state), n in entered.items()]
        tally(conn, moves)
        self._events.add_numbered(conn, events)
        return out

    async def enqueue_claimed(self, items: Sequence[tuple[Claim, NewJob]]) -> list[Claimed]:
        if not items:
            return []
        out = await self._db.write(self._enqueue_claimed_tx, items)
        self._work.fire()
        return out

    async def enqueue_claimed_with(
        self,
        items: Sequence[tuple[Claim, NewJob]],
        kv: Mapping[str, str],
        events: Sequence[Event],
        counters: Sequence[tuple[str, int, float | None]] = (),
    ) -> list[Claimed]:
        out = await self._db.write(self._enqueue_claimed_with_tx, items, kv, events, counters)
        self._work.fire()
        return out

    def _enqueue_claimed_with_tx(
        self,
        conn: sqlite3.Connection,
        items: Sequence[tuple[Claim, NewJob]],
        kv: Mapping[str, str],
        events: Sequence[Event],
        counters: Sequence[tuple[str, int, float | None]],
    ) -> list[Claimed]:
        for key, value in kv.items():
            coordination.kv_set(conn, self._clock, key, value, None)
        if events:
            self._publish_tx(conn, events)
        if counters:
            coordination.counter_add_many(conn, self._clock, counters)
        return self._enqueue_claimed_tx(conn, items)

    def _enqueue_claimed_tx(
        self, conn: sqlite3.Connection, items: Sequence[tuple[Claim, NewJob]]
    ) -> list[Claimed]:
        events: list[EventRow] = []
        moves: list[Move] = []
        first = next_id(conn)
        out = self._claim_jobs(conn, self._clock(), items, events, first, moves)
        tally(conn, moves)
        self._events.add(conn, events, first)
        return out

    def _claim_jobs(
        self,
        conn: sqlite3.Connection,
        now: float,
        items: Sequence[tuple[Claim, NewJob]],
        events: list[EventRow],
        first: int,
        moves: list[Move],
    ) -> list[Claimed]:
        """Write the jobs with their claims (enqueue_claimed), adding their events and
        count moves to the caller's, whose events are written numbered from ``first``. Two
        statements per item where its claim is won (the claim, the job), one more to tell a
        refusal from a claim already there."""
        out: list[Claimed] = []
        seen: set[str] = set()
        for claim, new in items:
            won = coordination.claim_unless(conn, now, claim.key, claim.value, claim.unless)
            if not won and (new.id in seen or self._live(conn, claim.unless)):
                out.append((False, None))
                continue
            seen.add(new.id)
            row, state, run_at = _job_row(new, now, first + len(events))
            # Its id or its live dedup key taken: the job exists (a rerun, a twin writer).
            if conn.execute(INSERT + " ON CONFLICT DO NOTHING", row).rowcount != 1:
                out.append((won, None))
                continue
            moves.append((new.queue, None, state, 1))
            events.append(event_row("job.queued", new.id, new.task, new.queue, now))
            out.append((won, EnqueueResult(new.id, True, public_state(state, run_at, now))))
        return out

    def _live(self, conn: sqlite3.Connection, key: str | None) -> bool:
        return key is not None and coordination.kv_get(conn, self._clock, key) is not None

    def _duplicate(
        self,
        conn: sqlite3.Connection,
        new: NewJob,
        now: float,
        events: list[NumberedRow],
        event: int,
        moves: list[Move],
    ) -> EnqueueResult:
        """The live job holding ``new.dedup_key``; with ``replace``, a not yet started one
        takes the new payload and its due time starts over (a debounce), queued by an
        event of id ``event``, added to ``events``."""
        live = conn.execute(
            f"SELECT id, state, run_at, task, queue FROM wh_jobs "
            f"WHERE queue = ? AND dedup_key = ? AND {LIVE}",
            (new.queue, new.dedup_key),
        ).fetchone()
        if live is None:
            raise BackendError(f"a job with id {new.id} already exists")
        id_, state, run_at, task, queue = live
        if new.hold:  # a run() caller waits for this job too
            conn.execute("UPDATE wh_jobs SET holds = holds + 1 WHERE id = ?", (id_,))
        if not new.replace or state == "active":
            return EnqueueResult(id_, False, public_state(state, run_at, now))
        run_at = new.at if new.at is not None else now + new.delay
        was, state = state, "scheduled" if run_at > now else "queued"
        moves.append((queue, was, state, 1))
        conn.execute(
            "UPDATE wh_jobs SET data = ?, priority = ?, max_attempts = ?, max_stalls = ?, "
            "timeout = ?, state = ?, run_at = ?, seq = ?, token = NULL, expires_at = NULL, "
            "worker = NULL, cancel_requested = 0 WHERE id = ?",
            (
                new.data,
                new.priority,
                new.max_attempts,
                new.max_stalls,
                new.timeout,
                state,
                run_at,
                event,  # the seq: its job.queued event's id
                id_,
            ),
        )
        events.append((event, *event_row("job.queued", id_, task, queue, now, {"replaced": True})))
        return EnqueueResult(id_, False, public_state(state, run_at, now), True)

    # -- consuming -------------------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        if limit <= 0 or not queues:
            return []
        return await self._db.write(self._claim_tx, queues, worker, limit, lease)

    def _claim_tx(
        self, conn: sqlite3.Connection, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        now = self._clock()
        leases: list[Lease] = []
        events: list[EventRow] = []
        moves: list[Move] = []
        for queue in queues:
            due = conn.execute(PROMOTE, {"queue": queue, "now": now}).rowcount
            rows = conn.execute(
                CLAIM,
                {
                    "worker": worker,
                    "now": now,
                    "lease": lease,
                    "queue": queue,
                    "limit": limit - len(leases),
                },
            ).fetchall()
            moves += [(queue, "scheduled", "queued", due), (queue, "queued", "active", len(rows))]
            # RETURNING does not keep the subquery's order.
            rows.sort(key=lambda r: (-r[10], r[11], r[12]))
            for r in rows:
                leases.append(
                    Lease(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[13])
                )
                events.append(
                    event_row(
                        "job.started", r[0], r[2], r[3], now, {"attempt": r[5], "worker": worker}
                    )
                )
            if len(leases) >= limit:
                break
        tally(conn, moves)
        self._events.add(conn, events)
        return leases

    async def renew(self, leases: Sequence[Lease]) -> RenewResult:
        if not leases:
            return RenewResult(frozenset(), frozenset())
        return await self._db.write(self._renew_tx, leases)

    def _renew_tx(self, conn: sqlite3.Connection, leases: Sequence[Lease]) -> RenewResult:
        now = self._clock()
        lost, cancel = set(), set()
        for lease in leases:
            row = conn.execute(
                RENEW,
                {
                    "expires": now + lease.lease,
                    "id": lease.job_id,
                    "token": lease.token,
                },
            ).fetchone()
            if row is None:
                lost.add(lease.job_id)
            elif row[0]:
                cancel.add(lease.job_id)
        return RenewResult(frozenset(lost), frozenset(cancel))

    def _merge_logs(
        self,
        conn: sqlite3.Connection,
        params: dict[str, Any],
        logs: Sequence[dict[str, Any]],
        dropped: int,
    ) -> None:
        """Set ``:logs`` to the job's stored lines and ``logs`` within the caps (None: no
        change) and ``:dropped`` to how many more were dropped, inside the write's transaction."""
        params["logs"], params["dropped"] = None, dropped
        if not logs:
            return
        row = conn.execute(OWNED_LOGS, params).fetchone()
        if row is None:
            return  # not the owner: the write that follows is refused
        lines = [*([] if row[0] is None else orjson.loads(row[0])), *logs]
        lines, drop = loglines.kept(lines, self.max_log_lines, self.max_log_bytes)
        params["logs"], params["dropped"] = to_json(lines), dropped + drop

    async def finish(self, items: Sequence[tuple[Lease, Outcome]]) -> list[bool]:
        if not items:
            return []
        accepted, requeued, followed, ended = await self._db.write(self._finish_tx, items)
        # Set once committed: a try rolled back (and run again) answers nothing.
        for i, (_, outcome) in enumerate(items):
            if outcome.followups:
                outcome.followups_claimed = followed.get(i)
            if outcome.end is not None:
                outcome.ended = ended.get(i)
        self._done.fire()
        if requeued:
            self._work.fire()
        return accepted

    def _finish_tx(
        self, conn: sqlite3.Connection, items: Sequence[tuple[Lease, Outcome]]
    ) -> tuple[list[bool], bool, dict[int, list[Claimed]], dict[int, tuple[bool, bool]]]:
        now = self._clock()
        accepted: list[bool] = []
        events: list[EventRow] = []
        moves: list[Move] = []
        requeued = False
        owners: list[int] = []  # the items whose follow-ups are written
        followed: dict[int, list[Claimed]] = {}  # by item: its follow-ups' answers
        ends: list[tuple[int, RunEnd]] = []  # the items whose run's end is written
        ended: dict[int, tuple[bool, bool]] = {}  # by item: its end's answers
        first: int | None = None  # the events' first id, once a row needs one (next_id)
        # Flow steps' own events (Outcome.events): each item's go before its outcome's
        # event (at that index of ``events``); ``ahead`` counts them, as they take ids too.
        steps: list[tuple[int, list[RunEventRow]]] = []
        ahead = 0
        for i, (lease, outcome) in enumerate(items):
            kind = outcome.kind
            own = published_rows(outcome.events, now) if outcome.events else None
            n_own = len(own) if own else 0  # rows ahead of its own event
            error = None if outcome.error is None else to_json(outcome.error)
            params: dict[str, Any] = {
                "id": lease.job_id,
                "token": lease.token,
                "now": now,
                "error": error,
            }
            self._merge_logs(conn, params, outcome.logs, outcome.logs_dropped)
            if kind == "retry" or kind == "completed":
                # Its event's id, which its row names: a retry's seq, and a completion's
                # completed_event (wh_events_job leaves job.completed out).
                named = (first := first or next_id(conn)) + len(events) + ahead + n_own
            if kind == "retry":
                run_at = now + outcome.delay
                params.update(
                    state="scheduled" if run_at > now else "queued",
                    run_at=run_at,
                    seq=named,
                    refund=1 if outcome.refund else 0,
                )
                changed = conn.execute(REQUEUE, params).rowcount
            elif kind == "completed":
                params.update(state=kind, result=outcome.result, completed=named)
                changed = conn.execute(END, params).rowcount
            else:
                params.update(state=kind, result=None, completed=None)
                changed = conn.execute(END, params).rowcount
            if changed != 1:
                accepted.append(False)
                continue
            accepted.append(True)
            if own:
                steps.append((len(events), own))
                ahead += len(own)
            moves.append((lease.queue, "active", params["state"], 1))
            requeued = requeued or kind == "retry"
            attempt = lease.attempts - 1 if kind == "retry" and outcome.refund else lease.attempts
            type_, data = recorded(outcome, attempt)
            events.append(event_row(type_, lease.job_id, lease.task, lease.queue, now, data))
            if outcome.followups and kind == "completed":
                owners.append(i)
            if outcome.end is not None and kind == "completed":
                ends.append((i, outcome.end))
        if owners:  # after every outcome: their events come first, then those they caused
            first = first or next_id(conn)
            followups = [f for i in owners for f in items[i][1].followups]
            claimed = self._claim_jobs(conn, now, followups, events, first + ahead, moves)
            at = 0
            for i in owners:
                n = len(items[i][1].followups)
                followed[i], at = claimed[at : at + n], at + n
            requeued = True  # new work: the workers wake as for a retry
        for i, end in ends:  # after every event of the call: its events end the log's rows
            ended[i] = self._run_ended(conn, end)
            if ended[i][1]:
                steps.append((len(events), published_rows([end.event], now)))
        tally(conn, moves)
        if steps:
            self._events.add(conn, with_published(events, steps), first)
        else:
            self._events.add(conn, events, first)
        return accepted, requeued, followed, ended

    def _run_ended(self, conn: sqlite3.Connection, end: RunEnd) -> tuple[bool, bool]:
        """Write a finish's run end (``Outcome.end``): see ``Backend.finish``."""
        if not coordination.set_if_absent(conn, self._clock, end.key, end.mark, None):
            return False, False
        if end.entry is not None:
            coordination.kv_set(conn, self._clock, end.entry, end.mark, None)
        return True, coordination.kv_delete(conn, self._clock, end.live, end.name)

    async def update(
        self,
        lease: Lease,
        progress: Any = None,
        logs: Sequence[dict[str, Any]] = (),
        dropped: int = 0,
    ) -> bool:
        return await self._db.write(self._update_tx, lease, progress, logs, dropped)

    def _update_tx(
        self,
        conn: sqlite3.Connection,
        lease: Lease,
        progress: Any,
        logs: Sequence[dict[str, Any]],
        dropped: int,
    ) -> bool:
        now = self._clock()
        params: dict[str, Any] = {
            "id": lease.job_id,
            "token": lease.token,
            "progress": None if progress is None else to_json(progress),
        }
        self._merge_logs(conn, params, logs, dropped)
        row = conn.execute(
            f"UPDATE wh_jobs SET progress = coalesce(:progress, progress), {SET_LOGS} "
            f"{OWNED} RETURNING 1",
            params,
        ).fetchone()
        if row is None:
            return False
        if progress is not None:
            data = {"progress": progress}
            ev = event_row("job.progress", lease.job_id, lease.task, lease.queue, now, data)
            self._events.add(conn, [ev])
        return True

    async def reclaim_expired(self) -> list[str]:
        reclaimed = (
            await self._db.write(self._reclaim_tx)
            if await self._db.read(any_expired, self._clock)
            else []
        )
        if reclaimed:
            self._work.fire()
            self._done.fire()
        now = time.monotonic()
        if now - self._last_sweep > 60:
            self._last_sweep = now
            await self._db.write(coordination.sweep, self._clock)
        return reclaimed

    def _reclaim_tx(self, conn: sqlite3.Connection) -> list[str]:
        first = next_id(conn)
        ids, events = reclaim(conn, self._clock(), first)
        self._events.add(conn, events, first)
        return ids

    # -- waiting -----------------------------------------------------------------------
    async def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        qs = list(queues)
        while True:
            gen, mark = self._work.gen, self._watcher.mark()
            due = await self._db.read(due_in, self._clock, qs)
            left = end - loop.time()
            if due is not None:
                left = min(left, due)
            if left <= 0:
                return
            woke = await self._watcher.wait(self._work, gen, mark, left)
            if woke != "wal":
                return  # our own write (worth a claim), a due time, or the timeout
            # Another connection committed: claim only if it left due work.

    async def wait_finished(self, ids: Collection[str], timeout: float) -> list[Job]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        wanted = to_json(list(ids))
        while True:
            gen, mark = self._done.gen, self._watcher.mark()
            done = await self._db.read(self._finished, wanted)
            left = end - loop.time()
            if done or left <= 0:
                return done
            if await self._watcher.wait(self._done, gen, mark, left) is None:
                return []

    def _finished(self, conn: sqlite3.Connection, wanted: str) -> list[Job]:
        now = self._clock()
        rows = conn.execute(
            f"SELECT {JOB_COLS} FROM wh_jobs WHERE id IN (SELECT value FROM json_each(?)) "
            "AND (state = 'completed' OR state = 'failed' OR state = 'cancelled')",
            (wanted,),
        ).fetchall()
        return [self._to_job(conn, r, now) for r in rows]

    # -- inspecting and controlling ----------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        return await self._db.read(self._get, job_id)

    def _get(self, conn: sqlite3.Connection, job_id: str) -> Job | None:
        row = conn.execute(f"SELECT {JOB_COLS} FROM wh_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._to_job(conn, row, self._clock())

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        return await self._db.read(self._get_many, list(ids))

    def _get_many(self, conn: sqlite3.Connection, ids: list[str]) -> list[Job]:
        now = self._clock()
        out: list[Job] = []
        for start in range(0, len(ids), 500):  # under SQLite's bound on parameters
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT {JOB_COLS} FROM wh_jobs WHERE id IN ({marks})", chunk)
            out.extend(self._to_job(conn, row, now) for row in rows.fetchall())
        return out

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
        return await self._db.read(self._query, queue, state, task, limit, offset, after)

    def _query(
        self,
        conn: sqlite3.Connection,
        queue: str | None,
        state: JobState | None,
        task: str | None,
        limit: int,
        offset: int,
        after: JobKey | None,
    ) -> list[Job]:
        now = self._clock()
        anchor = None
        if after is not None:
            row = conn.execute("SELECT created_at FROM wh_jobs WHERE id = ?", (after.id,))
            found = row.fetchone()
            anchor = (found[0], after.id) if found else after
        rows = listing(conn, queue, state, task, now, anchor, limit, offset)
        return [self._to_job(conn, r, now) for r in rows]

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        return await self._db.read(counts, self._clock, None if queues is None else list(queues))

    async def cancel(self, job_id: str) -> JobState | None:
        result = await self._db.write(self._cancel_tx, job_id)
        if result is None:
            return None
        state, ended = result
        if ended:
            self._done.fire()
        return state

    def _cancel_tx(self, conn: sqlite3.Connection, job_id: str) -> tuple[JobState, bool] | None:
        now = self._clock()
        row = conn.execute(
            "SELECT state, run_at, task, queue FROM wh_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            return None
        state, run_at, task, queue = row
        if state in ("queued", "scheduled"):
            conn.execute(
                "UPDATE wh_jobs SET state = 'cancelled', finished_at = ?, token = NULL, "
                "expires_at = NULL WHERE id = ?",
                (now, job_id),
            )
            tally(conn, [(queue, state, "cancelled", 1)])
            self._events.add(conn, [event_row("job.cancelled", job_id, task, queue, now)])
            return JobState.CANCELLED, True
        if state == "active":
            conn.execute("UPDATE wh_jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return public_state(state, run_at, now), False

    async def retry(self, job_id: str, data: bytes | None = None, by: str | None = None) -> bool:
        ok = await self._db.write(self._retry_tx, job_id, data, by)
        if ok:
            self._work.fire()
        return ok

    def _retry_tx(
        self, conn: sqlite3.Connection, job_id: str, data: bytes | None, by: str | None
    ) -> bool:
        now = self._clock()
        row = conn.execute(
            "SELECT state, dedup_key, task, queue, data FROM wh_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None or row[0] not in ("failed", "cancelled"):
            return False
        was, dedup_key, task, queue, old = row
        if (
            dedup_key is not None
            and conn.execute(
                f"SELECT 1 FROM wh_jobs WHERE queue = ? AND dedup_key = ? AND {LIVE}",
                (queue, dedup_key),
            ).fetchone()
        ):
            return False  # a newer live job holds the key
        conn.execute(
            "UPDATE wh_jobs SET state = 'queued', attempts = 0, stalls = 0, finished_at = NULL, "
            "error = NULL, result = NULL, run_at = ?, seq = ?, token = NULL, "
            "expires_at = NULL, worker = NULL, cancel_requested = 0, "
            "data = coalesce(?, data) WHERE id = ?",
            (now, first := next_id(conn), data, job_id),
        )
        tally(conn, [(queue, was, "queued", 1)])
        note = retried(None if data is None else bytes(old), by)
        self._events.add(conn, [event_row("job.queued", job_id, task, queue, now, note)], first)
        return True

    async def purge(
        self,
        *,
        states: Collection[JobState],
        older_than: float | None = None,
        keep_last: int | None = None,
        queue: str | None = None,
        retention: bool = False,
    ) -> int:
        finished = sorted(str(s) for s in set(states) & FINISHED_STATES)
        rules = [
            rule
            for rule, wanted in (
                ("own", retention),
                ("age", older_than is not None),
                ("rank", keep_last is not None),
            )
            if wanted
        ]
        cutoff = None if older_than is None else self._clock() - older_than
        deleted = 0
        # In chunks, each its own transaction: a large purge (retention after a long
        # stop) must not hold the write lock, or this object's thread, for seconds.
        for st in finished:
            for rule in rules:
                while True:
                    n = await self._db.write(
                        self._purge_tx, st, rule, cutoff, keep_last, queue, retention
                    )
                    deleted += n
                    if n < PURGE_CHUNK:
                        break
        return deleted

    def _purge_tx(
        self,
        conn: sqlite3.Connection,
        state: str,
        rule: str,
        cutoff: float | None,
        keep_last: int | None,
        queue: str | None,
        retention: bool,
    ) -> int:
        params: dict[str, Any] = {"state": state, "queue": queue, "chunk": PURGE_CHUNK}
        if rule == "own":
            params["now"] = self._clock()
        elif rule == "age":
            params["cutoff"] = cutoff
        else:
            params["keep"] = keep_last
        select = purge_select(rule, queue, retention)
        rows = conn.execute(
            f"DELETE FROM wh_jobs WHERE rid IN ({select}) RETURNING queue", params
        ).fetchall()
        tally(conn, [(queue, state, None, n) for queue, n in Counter(r[0] for r in rows).items()])
        return len(rows)

    async def release(self, ids: Collection[str]) -> None:
        if ids:
            await self._db.write(self._release_tx, to_json(list(ids)))

    def _release_tx(self, conn: sqlite3.Connection, ids: str) -> None:
        conn.execute(
            "UPDATE wh_jobs SET holds = max(holds - 1, 0) "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
        rows = conn.execute(
            f"DELETE FROM wh_jobs WHERE id IN (SELECT value FROM json_each(?)) "
            f"AND state IN ('completed', 'failed', 'cancelled') AND {OWN_RETENTION} "
            f"AND finished_at + keep_for <= ? RETURNING queue, state",
            (ids, self._clock()),
        ).fetchall()
        tally(conn, [(queue, state, None, 1) for queue, state in rows])

    async def pause(self, queue: str) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO wh_paused (queue) VALUES (?)", (queue,)
            )
        )

    async def resume(self, queue: str) -> None:
        await self._db.write(
            lambda conn: conn.execute("DELETE FROM wh_paused WHERE queue = ?", (queue,))
        )
        self._work.fire()

    async def paused(self) -> set[str]:
        return await self._db.read(
            lambda conn: {r[0] for r in conn.execute("SELECT queue FROM wh_paused")}
        )

    # -- coordination ------------------------------------------------------------------
    async def set_if_absent(
        self, key: str, value: str, ttl: float | None = None, unless: str | None = None
    ) -> bool:
        return await self._db.write(
            coordination.set_if_absent, self._clock, key, value, ttl, unless
        )

    async def kv_get(self, key: str) -> str | None:
        return await self._db.read(coordination.kv_get, self._clock, key)

    async def kv_get_many(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        return await self._db.read(coordination.kv_get_many, self._clock, list(keys))

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._db.write(coordination.kv_set, self._clock, key, value, ttl)

    async def kv_delete(self, key: str, value: str | None = None) -> bool:
        return await self._db.write(coordination.kv_delete, self._clock, key, value)

    async def kv_extend(self, held: Mapping[str, str], ttl: float) -> set[str]:
        if not held:
            return set()
        return await self._db.write(coordination.kv_extend, self._clock, held, ttl)

    async def kv_scan(
        self,
        prefix: str,
        limit: int | None = None,
        *,
        reverse: bool = False,
        after: str | None = None,
    ) -> dict[str, str]:
        return await self._db.read(coordination.kv_scan, self._clock, prefix, limit, reverse, after)

    async def counter_add(self, key: str, n: int, ttl: float | None = None) -> int:
        return await self._db.write(coordination.counter_add, self._clock, key, n, ttl)

    async def counter_add_many(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        if not items:
            return []
        return await self._db.write(coordination.counter_add_many, self._clock, items)

    # -- events and workers ------------------------------------------------------------
    async def publish(self, events: Sequence[Event]) -> None:
        if events:
            await self._db.write(self._publish_tx, events)

    def _publish_tx(self, conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        self._events.add(conn, published_rows(events, self._clock()))

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        # A cursor past any id (another store's, e.g. a PostgreSQL position) reads nothing.
        return await self._db.read(read_events, min(after, _MAX_ID), limit)

    async def job_events(self, job_id: str, limit: int = JOB_EVENTS) -> list[Event]:
        return await self._db.read(read_job_events, job_id, max(0, limit))

    async def run_events(self, run: str, after: int = 0, limit: int = 1000) -> list[Event]:
        return await self._db.read(read_run_events, run, min(after, _MAX_ID), limit)

    async def beat(self, info: WorkerInfo, ttl: float) -> None:
        await self._db.write(coordination.beat, self._clock, info, ttl)

    async def workers(self) -> list[WorkerInfo]:
        return await self._db.read(coordination.workers, self._clock)

    async def remove_worker(self, worker_id: str) -> None:
        await self._db.write(
            lambda conn: conn.execute("DELETE FROM wh_workers WHERE id = ?", (worker_id,))
        )


__all__ = ["SQLiteBackend", "path_from_url"]


def _job_row(new: NewJob, now: float, queued_event: int) -> tuple[tuple[Any, ...], str, float]:
    """The wh_jobs row of a new job (for INSERT), its stored state and its due time;
    ``queued_event``: the id its job.queued event will have, also its seq."""
    run_at = new.at if new.at is not None else now + new.delay
    state = "scheduled" if run_at > now else "queued"
    row = (
        new.id,
        new.task,
        new.queue,
        state,
        new.data,
        new.priority,
        new.max_attempts,
        new.timeout,
        new.lease,
        new.dedup_key,
        now,
        run_at,
        queued_event,
        new.keep_for,
        int(new.hold),
        new.max_stalls,
        queued_event,
    )
    return row, state, run_at
