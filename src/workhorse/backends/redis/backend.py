"""RedisBackend: the contract methods, each one script call (or a pipeline of them) on the
plumbing of RedisCore; the package's __init__ describes the keys."""

from __future__ import annotations

import dataclasses
import operator
import os
import time
from collections.abc import Collection, Coroutine, Mapping, Sequence
from typing import Any

from workhorse import codec
from workhorse.backends.base import JOB_EVENTS, Capabilities, RenewResult
from workhorse.backends.group import GroupCommit
from workhorse.backends.redis.core import HOLD_LOOK
from workhorse.backends.redis.records import decode_leases
from workhorse.backends.redis.waiting import RedisWaiting
from workhorse.backends.redis.wire import (
    Dropped,
    NoScript,
    Packed,
    ReplyError,
    Wire,
    bulk,
    error_of,
)
from workhorse.errors import BackendError
from workhorse.events import run_of
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
    WorkerInfo,
)

_COUNT_STATES = (
    JobState.QUEUED,
    JobState.SCHEDULED,
    JobState.ACTIVE,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
)
_STATES = {s.value.encode(): s for s in JobState}  # a reply's state, without decoding it
_ENQUEUE_CHUNK = 250  # jobs per enqueue script call
_ENQUEUE_ARGS = 6  # script arguments per job (see enqueue.lua)
# The ARGV index of a call's first task part (after the prelude's three arguments, the
# queue, the watch flag and the parts' count): each job names its part by this index.
_PARTS_AT = 7
# The ARGV index of a start's first kv key (start.lua: after the prelude's three arguments
# and the three places where its events, counters and claims start).
_START_AT = 7


_CREATED = {1: JobState.QUEUED, 2: JobState.SCHEDULED}  # enqueue.lua's short replies
# A job's task part (what _task_part sends), its due time and dedup key, its own two
# arguments of a plain call: read in C for a chunk's jobs at once (_pack_enqueue).
_PART_OF = operator.attrgetter(
    "task", "priority", "max_attempts", "timeout", "lease", "replace", "keep_for", "hold",
    "max_stalls",
)  # fmt: skip
_DUE_OF = operator.attrgetter("delay", "at", "dedup_key")
_DUE_NOW = (0, None, None)  # due now (a delay of 0 or 0.0), without a dedup key
_OWN_OF = operator.attrgetter("id", "data")
_FIRST_PART = bulk(_PARTS_AT)  # a job's part index when its call has one part
_PLAIN = bulk("p")  # in the place of the parts' count: a plain call (see _pack_enqueue)


def _job_args(new: NewJob) -> bytes:
    """A job's own six arguments in RESP, as _pack_enqueue packs them (its part first)."""
    return b"".join(
        [
            bulk(new.id),
            bulk(new.data),
            b"$3\r\n0.0\r\n" if new.delay == 0 else bulk(_num(new.delay)),
            b"$0\r\n\r\n" if new.at is None else bulk(_num(new.at)),
            b"$0\r\n\r\n" if new.dedup_key is None else bulk(new.dedup_key),
            _FIRST_PART,
        ]
    )


# claim_jobs's answer per item (_prelude.lua): won + 2 * (0 not written, 1 queued,
# 2 scheduled), as enqueue_claimed answers it (without the job's id).
_CLAIMED: dict[int, tuple[bool, JobState | None]] = {
    0: (False, None),
    1: (True, None),
    2: (False, JobState.QUEUED),
    3: (True, JobState.QUEUED),
    4: (False, JobState.SCHEDULED),
    5: (True, JobState.SCHEDULED),
}


def _claimed(new: NewJob, code: int) -> Claimed:
    won, state = _CLAIMED[code]
    return won, None if state is None else EnqueueResult(new.id, True, state)


def _result(new: NewJob, reply: Any) -> EnqueueResult:
    """One job's part of enqueue.lua's reply: 1 or 2 for a job it created, else the
    five fields of the job it found."""
    if type(reply) is int:
        return EnqueueResult(new.id, True, _CREATED[reply])
    return EnqueueResult(reply[0].decode(), bool(reply[1]), _STATES[reply[2]], bool(reply[4]))


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _event_args(events: Sequence[Event]) -> list[Any]:
    """Events as publish.lua (and finish.lua's steps' events) take them: seven each."""
    args: list[Any] = []
    for ev in events:
        args.extend(
            (
                ev.type,
                ev.job_id or "",
                ev.task or "",
                ev.queue or "",
                codec.dumps(ev.data),
                repr(float(ev.at)) if ev.at else "",
                run_of(ev) or "",
            )
        )
    return args


def _cursor(entry_id: bytes) -> int:
    """A stream entry id <ms>-<seq> as the event log's integer cursor."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms) * 1_000_000 + int(seq)


# A cursor at or past this has a millisecond no stream id has (they are 64-bit): nothing
# after it (another store's cursor, e.g. a PostgreSQL position).
_PAST_IDS = 2**64 * 1_000_000


class RedisBackend(RedisWaiting):
    """The Redis backend, standalone (redis://, rediss://) or Cluster (redis+cluster://)."""

    capabilities = Capabilities(
        durable=True, multi_process=True, multi_machine=True, counted_event_ids=False
    )

    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        super().__init__(url)
        # One server writes a finish's follow-ups in its script; a cluster cannot (they
        # reach other slots than the finishing job's), so its engine enqueues them itself.
        self.capabilities = dataclasses.replace(
            RedisBackend.capabilities,
            finish_followups=self._cluster is None,
            finish_events=self._cluster is None,  # {P}:events is another slot too
            finish_ends=self._cluster is None,  # and {P}:kv:
        )
        # Concurrent enqueue calls share script calls (one message, one script run for
        # many callers' jobs). Enqueue is idempotent per job id, so a shared call that
        # failed halfway may run again in halves; a lost connection or a timeout is
        # every caller's error, as it would be alone. gather: the callers one call answered
        # go together in the next (taking the free lanes one by one as they resumed, three
        # calls in four carried one job; docs/profiles.md, issue 16).
        self._group = GroupCommit(
            self._enqueue_now,
            lanes=2,
            unknown=(BackendError, TimeoutError),
            refused=(ReplyError,),
            gather=True,
        )

    async def close(self) -> None:
        self._group.close()
        await super().close()

    # -- producing -------------------------------------------------------------------
    def enqueue(
        self, jobs: Sequence[NewJob], *, watch: bool = False
    ) -> Coroutine[Any, Any, list[EnqueueResult]]:
        """A plain function that returns the coroutine to await: one level less per call
        (a request handler's enqueue goes through four before its reply)."""
        if watch or not jobs:
            return self._enqueue_now(jobs, watch=watch)
        return self._group.submit(jobs)

    def _enqueue_now(
        self, jobs: Sequence[NewJob], *, watch: bool = False
    ) -> Coroutine[Any, Any, list[EnqueueResult]]:
        """A plain function that picks the coroutine: one level less for a single job."""
        if len(jobs) == 1 and not watch and type(self._wire) is Wire:
            return self._enqueue_single(jobs[0])
        return self._enqueue_batch(jobs, watch)

    async def _enqueue_batch(self, jobs: Sequence[NewJob], watch: bool) -> list[EnqueueResult]:
        if not jobs:
            return []
        # Runs of consecutive jobs of one queue, in the caller's order: a batch that mixes
        # queues must be applied in order (a later job may meet an earlier one's dedup key).
        runs: list[tuple[str, list[NewJob]]] = []
        for new in jobs:
            if not runs or runs[-1][0] != new.queue:
                runs.append((new.queue, []))
            runs[-1][1].append(new)
        # Chunks of a few hundred jobs, pipelined: Redis runs one chunk's script while
        # this process still packs the next (one big script would serialise the two).
        # enqueue_watched: with the subscription up, the script watches the jobs right away
        # (the caller's wait then needs no fetch of its own; see wait_finished).
        sub = self._sub if watch else None
        chunks = [
            (q, part[k : k + _ENQUEUE_CHUNK]) for q, part in runs
            for k in range(0, len(part), _ENQUEUE_CHUNK)
        ]  # fmt: skip
        if len(runs) > 1 or runs[0][0] not in self._listed:
            await self._list_queues({q for q, _ in runs})
        flag = "0" if sub is None else "1"
        if type(self._conn()) is Wire:
            # A generator: each chunk is written as soon as it is packed, so the server
            # runs one chunk while this process packs the next.
            replies = await self._call_packed(
                self._pack_enqueue(q, flag, part) for q, part in chunks
            )
        else:
            calls = [("enqueue", self._q(q), [q, flag, *self._enqueue_args(part)])
                     for q, part in chunks]  # fmt: skip
            replies = await self._call_many(calls)
        # Replies come per chunk, in each chunk's order: the caller's order.
        where, watched, created = self._where, self._watch, _CREATED
        out: list[EnqueueResult] = []
        for (q, part), reply in zip(chunks, replies, strict=True):
            self._room(len(part))  # ``where`` is the same map, made room in
            if type(reply) is int:  # a plain chunk whose every job was created, queued
                if reply != len(part):
                    raise BackendError(f"enqueue answered {reply} jobs of {len(part)}")
                state = JobState.QUEUED  # a local: an enum member's lookup costs per job
                queued = [EnqueueResult(new.id, True, state) for new in part]
                for res in queued:
                    where[res.id] = q
                out += queued
                if sub is not None:
                    for res in queued:
                        watched(res.id, sub)
                continue
            for new, one in zip(part, reply, strict=True):
                if type(one) is int:  # created: _result's common case, inlined
                    res = EnqueueResult(new.id, True, created[one])
                    where[res.id] = q
                else:
                    res = _result(new, one)
                    where[res.id] = one[3].decode()  # a dedup key's job: its queue
                out.append(res)
                if sub is not None and res.state not in FINISHED_STATES:
                    watched(res.id, sub)
        return out

    async def _enqueue_single(self, new: NewJob) -> list[EnqueueResult]:
        """One job, unwatched, on a standalone server: the request handler's enqueue, kept
        to the few steps it needs (what _enqueue_now does for a batch, without the runs,
        chunks and the mapping back)."""
        queue = new.queue
        if queue not in self._listed:
            await self._list_queues((queue,))
        if time.monotonic() - self._hold_seen >= HOLD_LOOK:  # as _call_packed does
            self._refresh_holds()
        call = self._pack_one(new)
        wire = self._conn()
        try:
            try:
                # Sent and awaited here: no coroutine of the connection's in between.
                fut = wire.send_now(call) if type(wire) is Wire else None
                if fut is None:
                    reply = await wire.call(call)
                else:
                    reply = await fut
                    if type(reply) is not list and isinstance(reply, ReplyError):
                        raise error_of(reply, self._safe)
            except Dropped:
                reply = await wire.call(call)  # sent again on a fresh connection
        except NoScript:
            await self._load_scripts(wire)
            reply = await wire.call(call)
        res = _result(new, reply[0])
        self._remember(res.id, queue)  # a dedup key is the queue's own: the reply's queue
        return [res]

    def _pack_one(self, new: NewJob) -> Packed:
        """_pack_enqueue of one unwatched job in one formatting: what precedes the job's
        own arguments (the head, one task part) is cached per queue and options. A job due
        now without a dedup key goes plain, as in a batch: four arguments fewer, each ~900
        server instructions (docs/profiles.md, issue 16, branch enqredis)."""
        raw, at, dedup = new.id.encode(), new.at, new.dedup_key
        plain = new.delay == 0 and at is None and dedup is None
        key = (new.queue, plain, new.task, new.priority, new.max_attempts, new.timeout,
               new.lease, new.replace, new.keep_for, new.hold, new.max_stalls)  # fmt: skip
        start = self._singles.get(key)
        if start is None:
            if len(self._singles) >= 1024:
                self._singles.clear()  # options that vary per call: do not grow without bound
            whole = self._pack_enqueue(new.queue, "0", (new,), plain=plain)
            # The job's own arguments are the call's last: cut them off (plain: id and
            # payload; else also delay, due time, dedup key and its part's index).
            own = _job_args(new)
            if plain:
                own = bulk(new.id) + bulk(new.data)
            start = self._singles[key] = whole[: len(whole) - len(own)]
        if plain:
            return Packed(
                b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n" % (start, len(raw), raw, len(new.data), new.data)
            )
        return Packed(
            b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n%b%b%b%b"
            % (
                start,
                len(raw),
                raw,
                len(new.data),
                new.data,
                b"$3\r\n0.0\r\n" if new.delay == 0 else bulk(_num(new.delay)),
                b"$0\r\n\r\n" if at is None else bulk(_num(at)),
                b"$0\r\n\r\n" if dedup is None else bulk(dedup),
                _FIRST_PART,
            )
        )

    def _task_part(self, new: NewJob) -> tuple[Any, ...]:
        return (
            new.task,
            new.priority,
            new.max_attempts,
            _num(new.timeout),
            _num(new.lease),
            "1" if new.replace else "0",
            _num(new.keep_for),
            "1" if new.hold else "0",
            new.max_stalls,
        )

    def _enqueue_args(self, part: Sequence[NewJob]) -> list[Any]:
        """A chunk's script arguments after the queue and the watch flag, in enqueue.lua's
        order: its distinct task parts, then per job its own arguments and where its
        task part starts."""
        parts: dict[tuple[Any, ...], int] = {}
        jobs: list[Any] = []
        for new in part:
            key = self._task_part(new)
            where = parts.get(key)
            if where is None:
                where = parts[key] = _PARTS_AT + 9 * len(parts)
            dedup = "" if new.dedup_key is None else new.dedup_key
            jobs += (new.id, new.data, _num(new.delay), _num(new.at), dedup, where)
        return [len(parts), *(v for key in parts for v in key), *jobs]

    def _pack_enqueue(
        self, queue: str, flag: str, part: Sequence[NewJob], plain: bool = True
    ) -> Packed:
        """A chunk's EVALSHA in RESP (as _enqueue_args orders it), built from cached
        pieces: the call's head per queue and each task part's arguments; only the id,
        payload, delay, due time and dedup key are packed per job. A chunk of one task
        part whose jobs are due now without a dedup key goes plain (enqueue.lua's 'p'):
        two arguments per job instead of six (``plain=False``: never)."""
        head = self._heads.get((queue, flag))
        if head is None:
            qk = self._q(queue)
            call = self._eval("enqueue", qk, (queue, flag))
            head = self._heads[(queue, flag)] = (len(call), b"".join(map(bulk, call)))
        keys = list(map(_PART_OF, part))
        if (
            plain
            and keys.count(keys[0]) == len(keys)
            and list(map(_DUE_OF, part)).count(_DUE_NOW) == len(part)
        ):
            # The common chunk (a bulk call's): its jobs' part and due time checked in C
            # above, each job packed in one formatting (the loop below costs ~1.2 µs a job).
            own: list[bytes] = []
            for job_id, data in map(_OWN_OF, part):
                raw = job_id.encode()
                own.append(b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(raw), raw, len(data), data))
            size = head[0] + 10 + 2 * len(part)
            tail = self._part_tail(keys[0], part[0])
            return Packed(b"".join([b"*%d\r\n" % size, head[1], _PLAIN, tail, *own]))
        parts: list[bytes] = []
        where: dict[tuple[Any, ...], bytes] = {}  # a task part -> its ARGV index, packed
        jobs: list[bytes] = []
        for new, key in zip(part, keys, strict=True):
            at_part = where.get(key)
            if at_part is None:
                at_part = where[key] = bulk(_PARTS_AT + 9 * len(parts))
                parts.append(self._part_tail(key, new))
            at, dedup = new.at, new.dedup_key
            jobs += (
                bulk(new.id),
                bulk(new.data),
                b"$3\r\n0.0\r\n" if new.delay == 0 else bulk(_num(new.delay)),
                b"$0\r\n\r\n" if at is None else bulk(_num(at)),
                b"$0\r\n\r\n" if dedup is None else bulk(dedup),
                at_part,
            )
        size = head[0] + 1 + 9 * len(parts) + _ENQUEUE_ARGS * len(part)
        return Packed(b"".join([b"*%d\r\n" % size, head[1], bulk(len(parts)), *parts, *jobs]))

    def _part_tail(self, key: tuple[Any, ...], new: NewJob) -> bytes:
        """Task part ``key`` (``new``'s) packed, from the cache."""
        tasks = self._task_parts
        tail = tasks.get(key)
        if tail is None:
            if len(tasks) >= 1024:
                tasks.clear()  # options that vary per call: do not grow without bound
            tail = tasks[key] = b"".join(map(bulk, self._task_part(new)))
        return tail

    async def enqueue_watched(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Enqueue and, in the same script call, watch the jobs' finish (their record is
        then published whole), so the caller's first wait needs no look of its own."""
        return await self.enqueue(jobs, watch=True)

    async def enqueue_claimed(self, items: Sequence[tuple[Claim, NewJob]]) -> list[Claimed]:
        """One script call for all (lua/claimed.lua), each item's claim and job in it; on a
        cluster, whose slots one script cannot span, the base class's calls."""
        if not self.capabilities.finish_followups:
            return await super().enqueue_claimed(items)
        if not items:
            return []
        await self._list_queues({new.queue for _, new in items})
        codes = await self._call("claimed", "", *self._claim_args([("0", items)], 4))
        return self._claims_taken(items, codes)

    async def enqueue_claimed_with(
        self,
        items: Sequence[tuple[Claim, NewJob]],
        kv: Mapping[str, str],
        events: Sequence[Event],
        counters: Sequence[tuple[str, int, float | None]] = (),
    ) -> list[Claimed]:
        """The keys, the events, the counters and the claimed jobs in this order, in one
        script call (lua/start.lua): a producer killed while it sends it, or a reader,
        never finds a part without the rest. On a cluster (other slots, other nodes) the
        base class's calls. No items (a run whose entry waits for a signal): the keys,
        events and counters alone, in the script still."""
        if not self.capabilities.finish_followups or not (items or kv):
            return await super().enqueue_claimed_with(items, kv, events, counters)
        await self._list_queues({new.queue for _, new in items})
        pairs = [part for pair in kv.items() for part in pair]
        published = _event_args(events)
        counted = self._counter_args(counters)
        at_events = _START_AT + len(pairs)  # each part's first ARGV index (see start.lua)
        at_counters = at_events + len(published)
        at_claims = at_counters + len(counted)
        codes = await self._call(
            "start", "", at_events, at_counters, at_claims, *pairs, *published, *counted,
            *self._claim_args([("0", items)], at_claims),
        )  # fmt: skip
        return self._claims_taken(items, codes)

    def _claim_args(
        self, owned: Sequence[tuple[str, Sequence[tuple[Claim, NewJob]]]], at: int
    ) -> list[Any]:
        """A segment of claim_jobs's arguments (_prelude.lua) starting at ARGV[at]: the
        task parts, then runs of consecutive items of one queue and owner."""
        parts: dict[tuple[Any, ...], int] = {}
        runs: list[Any] = []
        for owner, items in owned:
            count = -1  # where the open run's item count is, in runs
            queue = None
            for claim, new in items:
                if new.queue != queue:
                    queue = new.queue
                    runs += (self._q(queue), queue, owner, 0)
                    count = len(runs) - 1
                runs[count] += 1
                part = self._task_part(new)
                where = parts.get(part)
                if where is None:
                    where = parts[part] = at + 1 + 9 * len(parts)
                dedup = "" if new.dedup_key is None else new.dedup_key
                runs += (new.id, new.data, _num(new.delay), _num(new.at), dedup, where,
                         claim.key, claim.value, claim.unless or "")  # fmt: skip
        return [len(parts), *(v for part in parts for v in part), *runs]

    def _claims_taken(self, items: Sequence[tuple[Claim, NewJob]], codes: Any) -> list[Claimed]:
        """claim_jobs's answers for ``items``, each written job remembered in its queue."""
        out = []
        for (_, new), code in zip(items, codes, strict=True):
            res = _claimed(new, code)
            if res[1] is not None:
                self._remember(new.id, new.queue)
            out.append(res)
        return out

    # -- consuming -------------------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker: str, limit: int, lease: float
    ) -> list[Lease]:
        leases: list[Lease] = []
        base = os.urandom(8).hex() + "."
        await self._list_queues(queues)  # reclaim must see them, even after a data loss
        for queue in queues:
            want = limit - len(leases)
            if want <= 0:
                break
            reply, idle = await self._call(
                "claim", self._q(queue), worker, want, repr(float(lease)), base
            )
            self._idle[queue] = (time.monotonic(), idle)
            leases += decode_leases(queue, reply)
        return leases

    async def renew(self, leases: Sequence[Lease]) -> RenewResult:
        by_queue: dict[str, list[Any]] = {}
        order: dict[str, list[str]] = {}
        for lease in leases:
            by_queue.setdefault(lease.queue, []).extend(
                (lease.job_id, lease.token, repr(float(lease.lease)))
            )
            order.setdefault(lease.queue, []).append(lease.job_id)
        if not by_queue:
            return RenewResult(frozenset(), frozenset())
        replies = await self._call_many(
            [("renew", self._q(q), args) for q, args in by_queue.items()]
        )
        lost, cancel = set(), set()
        for q, reply in zip(by_queue, replies, strict=True):
            for job_id, code in zip(order[q], reply, strict=True):
                if code == 0:
                    lost.add(job_id)
                elif code == 2:
                    cancel.add(job_id)
        return RenewResult(frozenset(lost), frozenset(cancel))

    async def finish(self, items: Sequence[tuple[Lease, Outcome]]) -> list[bool]:
        by_queue: dict[str, list[Any]] = {}
        slots: dict[str, list[int]] = {}
        # per queue, its groups: each completed item's number in its call, its follow-ups
        owned: dict[str, list[tuple[str, Sequence[tuple[Claim, NewJob]]]]] = {}
        stepped: dict[str, list[Any]] = {}  # per queue, its items' steps' events (finish.lua)
        ending: dict[str, list[Any]] = {}  # per queue, its items' runs' ends (finish.lua)
        ends: list[int] = []  # the items with a run's end
        capable, closing = self.capabilities.finish_followups, self.capabilities.finish_ends
        dumps = codec.dumps
        for n, (lease, out) in enumerate(items):
            by_queue.setdefault(lease.queue, []).extend(
                (
                    lease.job_id,
                    lease.token,
                    out.kind,
                    b"" if out.result is None else out.result,
                    b"" if out.error is None else dumps(out.error),
                    repr(float(out.delay)),
                    "1" if out.refund else "0",
                    _lines(out.logs, out.logs_dropped) if out.logs or out.logs_dropped else b"",
                )
            )
            numbers = slots.setdefault(lease.queue, [])
            numbers.append(n)
            if out.events:
                stepped.setdefault(lease.queue, []).extend(
                    (str(len(numbers)), len(out.events), *_event_args(out.events))
                )
            if capable and out.followups:
                out.followups_claimed = None  # until this finish writes them
                if out.kind == "completed":
                    owned.setdefault(lease.queue, []).append((str(len(numbers)), out.followups))
            end = out.end
            if end is not None and closing:
                out.ended = None  # until this finish writes it
                if out.kind == "completed":
                    ends.append(n)
                    ending.setdefault(lease.queue, []).extend(
                        (str(len(numbers)), end.key, end.mark, end.live, end.name, end.entry or "")
                    )
                    ending[lease.queue].extend(_event_args((end.event,)))
        if not by_queue:
            return []
        if owned:
            await self._list_queues(
                {new.queue for groups in owned.values() for _, fs in groups for _, new in fs}
            )
        caps = (str(self.max_log_lines), str(self.max_log_bytes))
        calls: list[tuple[str, str, Sequence[Any]]] = []
        for q, args in by_queue.items():
            groups = owned.get(q)
            steps = stepped.get(q, ())
            runs = ending.get(q, ())
            # The steps' events', the ends' and the follow-ups' first ARGV indexes (see
            # finish.lua).
            events_at = 9 + len(args) if steps else ""
            ends_at = 9 + len(args) + len(steps) if runs else ""
            head = (*caps, "", events_at, ends_at, *args, *steps, *runs)
            if groups is not None:
                at = 9 + len(args) + len(steps) + len(runs)
                head = (*caps, at, *head[3:], *self._claim_args(groups, at))
            calls.append(("finish", self._q(q), head))
        replies = await self._call_many(calls)
        accepted = [False] * len(items)
        for q, reply in zip(by_queue, replies, strict=True):
            groups = owned.get(q)
            codes = reply if groups is None else reply[0]
            for n, code in zip(slots[q], codes, strict=True):
                accepted[n] = code & 1 == 1
                if code > 1:  # an end written: 1 + 2 (marker set) + 4 (live entry deleted)
                    items[n][1].ended = (code & 2 == 2, code & 4 == 4)
            if groups is not None:
                self._followups_taken(items, slots[q], groups, reply[1], accepted)
        for n in ends:
            if accepted[n] and items[n][1].ended is None:  # an end whose marker was there
                items[n][1].ended = (False, False)
        return accepted

    def _followups_taken(
        self,
        items: Sequence[tuple[Lease, Outcome]],
        numbers: Sequence[int],
        groups: Sequence[tuple[str, Sequence[tuple[Claim, NewJob]]]],
        codes: Sequence[int],
        accepted: Sequence[bool],
    ) -> None:
        """A finish call's follow-up answers (those of the items it completed, in order)
        set in each written outcome's ``followups_claimed``."""
        at = 0
        for owner, followups in groups:
            n = numbers[int(owner) - 1]
            if accepted[n]:
                taken = codes[at : at + len(followups)]
                items[n][1].followups_claimed = self._claims_taken(followups, taken)
                at += len(followups)

    async def update(
        self,
        lease: Lease,
        progress: Any = None,
        logs: Sequence[dict[str, Any]] = (),
        dropped: int = 0,
    ) -> bool:
        payload = b"" if progress is None else codec.dumps(progress)
        data = b"" if progress is None else codec.dumps({"progress": progress})
        ok = await self._call(
            "update",
            self._q(lease.queue),
            lease.job_id,
            lease.token,
            payload,
            data,
            _lines(logs, dropped) if logs or dropped else b"",
            str(self.max_log_lines),
            str(self.max_log_bytes),
        )
        return bool(ok)

    async def reclaim_expired(self) -> list[str]:
        await self._check_epoch()
        if time.monotonic() - self._last_sweep > HOLD_LOOK:
            self._last_sweep = time.monotonic()
            await self.sweep()
        queues = await self._queues()
        if not queues:
            return []
        replies = await self._call_many([("reclaim", self._q(q), ()) for q in queues])
        return [job_id.decode() for reply in replies for job_id in reply]

    async def sweep(self) -> None:
        """While hook groups hold the event log (each XADD then caps its stream at
        HOLD_FACTOR * max_events), trim each stream to max_events, keeping every entry
        from the lowest floor on: at most 10,000 entries per stream per sweep."""
        await self._look_for_holds(now=True)
        if not self._floors:
            return
        ms, seq = divmod(min(self._floors), 1_000_000)
        conn = self._conn()
        for stream in [self._g + "events", *(self._q(q) + "events" for q in await self._queues())]:
            excess = int(await conn.call("XLEN", stream)) - self._max_events
            if excess <= 0:
                continue
            # Entries before the floor ("(": exclusive): the floor's own entry stays, so
            # a listener tells a trim that passed its cursor from one that did not.
            read = await conn.call(
                "XRANGE", stream, "-", f"({ms}-{seq}", "COUNT", min(excess, 10_000)
            )
            if read:
                last_ms, last_seq = divmod(_cursor(read[-1][0]), 1_000_000)
                await conn.call("XTRIM", stream, "MINID", f"{last_ms}-{last_seq + 1}")

    # -- inspecting and controlling ----------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        found = await self._fetch([job_id])
        return found[0] if found else None

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        return await self._fetch(ids)

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
        if limit <= 0 or task == "":  # the script reads '' as "any task"; no task has it
            return []
        queues = [queue] if queue is not None else await self._queues()
        if not queues:
            return []
        st = "" if state is None else JobState(state).value
        one = len(queues) == 1
        # Across queues: the newest offset+limit of each, merged, then the page cut out.
        # The anchor's time as the store wrote it (seconds and microseconds).
        anchor = ("", "") if after is None else (after.id, f"{after.created:.6f}")
        args = (st, task or "", offset if one else 0, limit if one else offset + limit, *anchor)
        replies = await self._call_many([("query", self._q(q), args) for q in queues])
        jobs = [
            job
            for q, reply in zip(queues, replies, strict=True)
            for job in await self._jobs(self._q(q), reply)
        ]
        if one:
            return jobs
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return jobs[offset : offset + limit]

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        names = list(queues) if queues is not None else await self._queues()
        if not names:
            return {}
        replies = await self._call_many([("counts", self._q(q), ()) for q in names])
        out: dict[str, dict[str, int]] = {}
        for q, reply in zip(names, replies, strict=True):
            row: dict[str, int] = dict(zip(_COUNT_STATES, (int(n) for n in reply), strict=True))
            if queues is None and not any(row.values()):
                continue  # a queue whose jobs are all gone, as if never used
            out[q] = row
        return out

    async def _queue_of(self, job_id: str) -> str | None:
        queue = self._where.get(job_id)
        if queue is None:
            if not await self._fetch([job_id]):
                return None
            queue = self._where.get(job_id)
        return queue

    async def cancel(self, job_id: str) -> JobState | None:
        queue = await self._queue_of(job_id)
        if queue is None:
            return None
        state = await self._call("cancel", self._q(queue), job_id)
        return None if not state else JobState(state.decode())

    async def release(self, ids: Collection[str]) -> None:
        for job_id in ids:
            queue = await self._queue_of(job_id)
            if queue is not None:
                await self._call("release", self._q(queue), job_id)

    async def retry(self, job_id: str, data: bytes | None = None, by: str | None = None) -> bool:
        queue = await self._queue_of(job_id)
        if queue is None:
            return False
        return bool(await self._call("retry", self._q(queue), job_id, data or b"", by or ""))

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
        queues = [queue] if queue is not None else await self._queues()
        total = 0
        keep = "" if keep_last is None else keep_last
        for st in sorted(set(states) & FINISHED_STATES):
            # keep_last counts per queue, so one script per queue reads and deletes at once.
            calls = [
                ("purge", self._q(q), (st.value, _num(older_than), keep, "1" if retention else ""))
                for q in queues
            ]
            if calls:
                total += sum(await self._call_many(calls))
        return total

    async def pause(self, queue: str) -> None:
        await self._list_queues([queue])
        await self._call("pause", self._q(queue), "1")

    async def resume(self, queue: str) -> None:
        await self._call("pause", self._q(queue), "0")

    async def paused(self) -> set[str]:
        queues = await self._queues()
        flags = await self._conn().many([("EXISTS", self._q(q) + "paused") for q in queues])
        return {q for q, flag in zip(queues, flags, strict=True) if flag}

    # -- coordination ------------------------------------------------------------------
    async def set_if_absent(
        self, key: str, value: str, ttl: float | None = None, unless: str | None = None
    ) -> bool:
        px = "" if ttl is None else max(1, round(ttl * 1000))
        return bool(await self._call("kv", "", "setnx", key, value, px, unless or ""))

    async def kv_get(self, key: str) -> str | None:
        raw = await self._conn().call("GET", self._g + "kv:" + key)
        return None if raw is None else raw.decode()

    async def kv_get_many(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        # Every kv key is in the {P} slot: one MGET, on a cluster too.
        raw = await self._conn().call("MGET", *(self._g + "kv:" + k for k in keys))
        return {k: v.decode() for k, v in zip(keys, raw, strict=True) if v is not None}

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        px = "" if ttl is None else max(1, round(ttl * 1000))
        await self._call("kv", "", "set", key, value, px)

    async def kv_delete(self, key: str, value: str | None = None) -> bool:
        only = "0" if value is None else "1"
        return bool(await self._call("kv", "", "delete", key, only, value or ""))

    async def kv_extend(self, held: Mapping[str, str], ttl: float) -> set[str]:
        if not held:
            return set()
        pairs = [part for item in held.items() for part in item]
        flags = await self._call("kv", "", "extend", max(1, round(ttl * 1000)), *pairs)
        return {key for key, flag in zip(held, flags, strict=True) if flag}

    async def kv_scan(
        self,
        prefix: str,
        limit: int | None = None,
        *,
        reverse: bool = False,
        after: str | None = None,
    ) -> dict[str, str]:
        if limit is not None and limit < 1:
            return {}
        # The range's end that ``after`` moves ('' keeps the prefix's, which kvscan.lua
        # writes in bytes); str compares as UTF-8 bytes do.
        lo = hi = ""
        if after is not None and reverse and (after.startswith(prefix) or after < prefix):
            hi = "(" + after
        elif after is not None and not reverse and after >= prefix:
            lo = "(" + after
        flat = await self._call(
            "kvscan", "", prefix, "" if limit is None else limit, "1" if reverse else "0", lo, hi
        )
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    async def counter_add(self, key: str, n: int, ttl: float | None = None) -> int:
        if n == 0:
            return (await self._counters([key]))[0]
        px = "" if ttl is None else max(1, round(ttl * 1000))
        return int((await self._call("counter", "", self._g + "n:" + key, n, px))[0])

    async def counter_add_many(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        if not items:
            return []
        if not any(n for _, n, _ in items):
            return await self._counters([key for key, _, _ in items])
        return [int(v) for v in await self._call("counter", "", *self._counter_args(items))]

    async def _counters(self, keys: Sequence[str]) -> list[int]:
        """Adding 0 reads: one MGET (every counter is in the {P} slot), which answers at
        maxmemory, where the counter function is refused before it runs."""
        found = await self._conn().call("MGET", *(self._g + "n:" + key for key in keys))
        return [0 if v is None else int(v) for v in found]

    def _counter_args(self, items: Sequence[tuple[str, int, float | None]]) -> list[Any]:
        """The counter script's arguments: key, n and ttl in ms per add."""
        args: list[Any] = []
        g = self._g + "n:"
        for key, n, ttl in items:  # every counter is in the {P} slot: one call on a cluster
            args += (g + key, n, "" if ttl is None else max(1, round(ttl * 1000)))
        return args

    # -- events and workers ------------------------------------------------------------
    async def publish(self, events: Sequence[Event]) -> None:
        args = _event_args(events)
        if args:
            await self._call("publish", "", *args)

    async def job_events(self, job_id: str, limit: int = JOB_EVENTS) -> list[Event]:
        """Read by the entry ids the job's record keeps (lua/jobevents.lua), in its queue's
        slot; a job this process has not seen is looked for in every queue, in one trip."""
        if limit <= 0:
            return []
        queue = self._where.get(job_id)
        queues = [queue] if queue is not None else await self._queues()
        if not queues:
            return []
        replies = await self._call_many([("jobevents", self._q(q), (job_id,)) for q in queues])
        entries = [entry for reply in replies for entry in reply]
        return [_event(_cursor(entry_id), flat) for entry_id, flat in entries[-limit:]]

    async def events_head(self) -> int:
        # The newest entry of each stream, not a walk: reads hold back the current
        # millisecond's entries, which a group starting now must not read again.
        streams = [self._g + "events", *(self._q(q) + "events" for q in await self._queues())]
        replies = await self._conn().many([("XREVRANGE", s, "+", "-", "COUNT", 1) for s in streams])
        newest = 0
        for entries in replies:
            if isinstance(entries, Exception):
                raise entries
            for entry_id, _ in entries:
                newest = max(newest, _cursor(entry_id))
        return newest

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        """The streams merged: {P}:events and each queue's {P:Q}:events, by entry id.

        Only entries older than the server's current millisecond are returned (the
        horizon, read before the streams): a later XADD gets an id at or past it, so a
        reader whose cursor passed an id never misses an event written after it. Entries
        of different streams may share an id (the same millisecond and sequence); a page
        never splits them, so the cursor stays exact."""
        if limit <= 0 or after >= _PAST_IDS:
            return []
        streams = [self._g + "events", *(self._q(q) + "events" for q in await self._queues())]
        ms, seq = divmod(max(0, int(after)), 1_000_000)
        reads = [("XRANGE", s, f"({ms}-{seq}", "+", "COUNT", limit) for s in streams]
        horizon, replies = await self._conn().read_after_time(reads)
        merged: list[tuple[int, int, Any]] = []
        for n, entries in enumerate(replies):
            if isinstance(entries, Exception):
                raise entries
            for entry_id, flat in entries:
                cursor = _cursor(entry_id)
                if cursor // 1_000_000 >= horizon:
                    break
                merged.append((cursor, n, flat))
        merged.sort(key=lambda m: (m[0], m[1]))
        if len(merged) > limit:
            cut = limit
            while cut > 0 and merged[cut - 1][0] == merged[limit][0]:
                cut -= 1  # the last id continues past the page: leave it whole for the next
            if cut == 0:  # one id holds more than a page: it goes out whole
                while cut < len(merged) and merged[cut][0] == merged[0][0]:
                    cut += 1
            merged = merged[:cut]
        return [_event(cursor, flat) for cursor, _, flat in merged]

    async def run_events(self, run: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """The run's own stream (publish.lua), below the server's current millisecond as
        ``events`` reads, so a reader resuming after an id misses nothing."""
        if limit <= 0 or after >= _PAST_IDS:
            return []
        ms, seq = divmod(max(0, int(after)), 1_000_000)
        read = ("XRANGE", self._g + "rev:" + run, f"({ms}-{seq}", "+", "COUNT", limit)
        horizon, (entries,) = await self._conn().read_after_time([read])
        if isinstance(entries, Exception):
            raise entries
        out = []
        for entry_id, flat in entries:
            cursor = _cursor(entry_id)
            if cursor // 1_000_000 >= horizon:
                break
            out.append(_event(cursor, flat))
        return out

    async def beat(self, info: WorkerInfo, ttl: float) -> None:
        record = codec.dumps(
            {
                "host": info.host,
                "pid": info.pid,
                "queues": info.queues,
                "started_at": info.started_at,
                "active": info.active,
                "processed": info.processed,
                "tasks": info.tasks,
                "paused": info.paused,
                "flows": info.flows,
                "ttl": ttl,
            }
        )
        now = await self._call("beat", "", info.id, record, repr(float(ttl)))
        info.last_seen = float(now)

    async def workers(self) -> list[WorkerInfo]:
        reply = await self._call("workers", "")
        out = []
        for i in range(1, len(reply), 3):
            rec = codec.loads(reply[i + 2])
            out.append(
                WorkerInfo(
                    reply[i].decode(),
                    rec["host"],
                    rec["pid"],
                    rec["queues"],
                    rec["started_at"],
                    rec["active"],
                    rec["processed"],
                    float(reply[i + 1]) - float(rec["ttl"]),
                    list(rec.get("tasks", ())),
                    bool(rec.get("paused", False)),
                    list(rec.get("flows", ())),
                )
            )
        return out

    async def remove_worker(self, worker_id: str) -> None:
        await self._conn().many(
            [("HDEL", self._g + "workers", worker_id), ("ZREM", self._g + "workers:exp", worker_id)]
        )


def _event(cursor: int, flat: list[bytes]) -> Event:
    """A stream entry's fields (see event() in _prelude.lua) as an Event."""
    f = dict(zip(flat[::2], flat[1::2], strict=True))
    return Event(
        f[b"e"].decode(),
        f[b"j"].decode() or None,
        f[b"t"].decode() or None,
        f[b"q"].decode() or None,
        codec.loads(f[b"d"]),
        float(f[b"a"]),
        cursor,
    )


def _lines(logs: Sequence[dict[str, Any]], dropped: int) -> bytes:
    """``DROPPED:SIZES:LINES`` for the script's add_logs: the lines as a JSON array and
    their sizes (10 digits each), by which it cuts the oldest off the stored array without
    parsing it."""
    parts = [codec.dumps(line) for line in logs]
    sizes = b"".join(b"%010d" % len(p) for p in parts)
    lines = b"[" + b",".join(parts) + b"]" if parts else b""
    return b"%d:%s:%s" % (dropped, sizes, lines)
