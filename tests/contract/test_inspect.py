"""Inspecting and controlling: get, query, counts, cancel, retry, purge."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from workhorse import codec
from workhorse.backends import Backend
from workhorse.job import Job, JobState, NewJob, Outcome

from .support import (
    LONG,
    SHORT,
    claim_one,
    completed,
    enqueue_one,
    error,
    eventually,
    failed,
    must_get,
    new,
)

ALL_STATES = {s.value for s in JobState}


async def test_get_unknown_is_none(backend: Backend) -> None:
    assert await backend.get("0" * 32) is None
    assert await backend.get("not-an-id") is None


def id_list(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


# -- query ------------------------------------------------------------------------------
async def _enqueue_spaced(backend: Backend, *jobs: NewJob) -> list[str]:
    ids = []
    for req in jobs:
        ids.append(await enqueue_one(backend, req))
        await asyncio.sleep(0.002)  # distinct creation times
    return ids


async def test_query_newest_first_with_paging(backend: Backend) -> None:
    ids = await _enqueue_spaced(backend, *[new(data={"i": i}) for i in range(7)])
    newest_first = ids[::-1]
    assert [j.id for j in await backend.query()] == newest_first
    assert [j.id for j in await backend.query(limit=3)] == newest_first[:3]
    assert [j.id for j in await backend.query(limit=3, offset=3)] == newest_first[3:6]
    assert [j.id for j in await backend.query(limit=3, offset=6)] == newest_first[6:]
    assert await backend.query(limit=3, offset=7) == []
    page = await backend.query(limit=1)
    assert page[0].data == {"i": 6}


async def test_query_filters(backend: Backend) -> None:
    a1, a2, b1, b2 = await _enqueue_spaced(
        backend,
        new("send", "a"),
        new("resize", "a"),
        new("send", "b"),
        new("send", "b", delay=60),
    )
    lease = await claim_one(backend, queue="a")  # a1: active
    assert lease.job_id == a1

    assert id_list(await backend.query(queue="a")) == [a2, a1]
    assert id_list(await backend.query(queue="b")) == [b2, b1]
    assert id_list(await backend.query(task="send")) == [b2, b1, a1]
    assert id_list(await backend.query(task="send", queue="b")) == [b2, b1]
    assert id_list(await backend.query(state=JobState.ACTIVE)) == [a1]
    assert id_list(await backend.query(state=JobState.QUEUED)) == [b1, a2]
    assert id_list(await backend.query(state=JobState.SCHEDULED)) == [b2]
    assert id_list(await backend.query(state=JobState.QUEUED, task="resize")) == [a2]
    assert id_list(await backend.query(queue="nope")) == []
    assert id_list(await backend.query(state=JobState.FAILED)) == []

    await backend.finish([(lease, failed())])
    assert id_list(await backend.query(state=JobState.FAILED, queue="a")) == [a1]


async def test_query_state_filter_pages_after_filtering(backend: Backend) -> None:
    ids = await _enqueue_spaced(backend, *[new(delay=60 if i % 2 else 0) for i in range(6)])
    scheduled = [x for i, x in enumerate(ids) if i % 2][::-1]
    got = await backend.query(state=JobState.SCHEDULED, limit=2, offset=1)
    assert [j.id for j in got] == scheduled[1:3]


async def test_query_pages_through_mixed_states_and_queues(backend: Backend) -> None:
    # Stores may merge a page from per-state (or per-queue) ranges: the order and the
    # paging must be those of one list.
    ids = await _enqueue_spaced(backend, *[new(queue="ab"[i % 2]) for i in range(8)])
    first, second = await backend.claim(["a"], "w", 2, LONG)
    (third,) = await backend.claim(["b"], "w", 1, LONG)
    assert (first.job_id, second.job_id, third.job_id) == (ids[0], ids[2], ids[1])
    await backend.finish([(first, failed()), (second, completed()), (third, failed())])
    newest = ids[::-1]
    assert id_list(await backend.query(limit=3, offset=2)) == newest[2:5]
    assert id_list(await backend.query(queue="a")) == newest[1::2]
    assert id_list(await backend.query(queue="a", limit=2, offset=1)) == newest[3::2][:2]
    assert id_list(await backend.query(state=JobState.FAILED)) == [ids[1], ids[0]]
    assert id_list(await backend.query(state=JobState.FAILED, limit=1, offset=1)) == [ids[0]]
    queued = [x for x in newest if x not in ids[:3]]
    assert id_list(await backend.query(state=JobState.QUEUED, limit=4, offset=1)) == queued[1:5]


# -- counts -----------------------------------------------------------------------------
async def test_counts_every_state_per_queue(backend: Backend) -> None:
    await backend.enqueue([new(queue="a"), new(queue="a"), new(queue="a", delay=60)])
    await backend.enqueue([new(queue="b"), new(queue="b")])
    lease = await claim_one(backend, queue="b")
    await backend.finish([(lease, completed())])
    b_active = await claim_one(backend, queue="b")

    counts = await backend.counts(["a", "b", "empty"])
    assert set(counts) == {"a", "b", "empty"}
    for row in counts.values():
        assert set(row) == ALL_STATES
    assert counts["a"] == {**dict.fromkeys(ALL_STATES, 0), "queued": 2, "scheduled": 1}
    assert counts["b"] == {**dict.fromkeys(ALL_STATES, 0), "completed": 1, "active": 1}
    assert counts["empty"] == dict.fromkeys(ALL_STATES, 0)

    only_a = await backend.counts(["a"])
    assert set(only_a) == {"a"}
    everything = await backend.counts()
    assert set(everything) >= {"a", "b"}
    assert everything["b"] == counts["b"]

    await backend.finish([(b_active, failed())])
    assert (await backend.counts(["b"]))["b"]["failed"] == 1


async def test_counts_move_from_scheduled_to_queued_when_due(backend: Backend) -> None:
    await enqueue_one(backend, new(delay=0.4))
    assert (await backend.counts(["q"]))["q"]["scheduled"] == 1

    async def queued() -> bool:
        row = (await backend.counts(["q"]))["q"]
        return row["queued"] == 1 and row["scheduled"] == 0

    await eventually(queued, "the scheduled job to count as queued once due")


def _checker(backend: Backend, ids: list[str]) -> Callable[[], Awaitable[None]]:
    """counts() of queues a and b, asked by name and for all, against the jobs' states."""

    async def check() -> None:
        tally = {q: dict.fromkeys(ALL_STATES, 0) for q in ("a", "b")}
        for job in await backend.get_many(list(set(ids))):
            tally[job.queue][job.state.value] += 1
        assert await backend.counts(["a", "b"]) == tally
        everything = await backend.counts()
        assert {q: everything.get(q, dict.fromkeys(ALL_STATES, 0)) for q in tally} == tally

    return check


async def test_counts_match_the_jobs_after_every_kind_of_change(backend: Backend) -> None:
    # Backends may keep counters instead of counting rows (SQL: migration 0010, schema 7); after
    # each kind of state change they must agree with the jobs' own states.
    ids: list[str] = []
    check = _checker(backend, ids)
    batch = [new(queue="a") for _ in range(6)] + [new(queue="b"), new(queue="a", delay=60)]
    ids += [r.id for r in await backend.enqueue(batch)]
    await check()
    leases = await backend.claim(["a"], "w", 4, LONG)
    await check()
    await backend.finish([(leases[0], completed()), (leases[1], failed())])
    await backend.finish([(leases[2], Outcome("retry", error=error(), delay=30.0))])
    await check()
    await backend.cancel(ids[5])
    await backend.cancel(leases[3].job_id)
    await check()
    assert await backend.retry(leases[1].job_id)
    await check()
    await backend.purge(states=[JobState.COMPLETED])
    await check()
    dup = await backend.enqueue([new(queue="b", dedup_key="k"), new(queue="b", dedup_key="k")])
    ids += [r.id for r in dup]
    await check()
    # A finish with log lines, the same finish sent again (its reply lost), a retry with a
    # new payload: each statement's variant counts its change once.
    logged, edited = await backend.claim(["b"], "w", 2, LONG)
    done = Outcome("completed", codec.dumps(1), logs=[{"message": "line"}])
    await backend.finish([(logged, done), (edited, failed())])
    await backend.finish([(logged, done)])
    await check()
    assert await backend.retry(edited.job_id, codec.dumps({"n": 2}), "ops")
    await check()


async def test_counts_match_the_jobs_after_reclaim_replace_retention_and_purge(
    backend: Backend,
) -> None:
    ids: list[str] = []
    check = _checker(backend, ids)
    # A replace that makes a scheduled job due; a job that comes due by itself.
    first = new(queue="a", dedup_key="d", delay=60)
    again = replace(new(queue="a", dedup_key="d"), replace=True)
    ids += [r.id for r in await backend.enqueue([first, new(queue="b", delay=0.3)])]
    await check()
    ids += [r.id for r in await backend.enqueue([again])]
    await check()
    await asyncio.sleep(0.4)
    await check()
    # Expired leases: one requeued, one past its stalls failed, one cancelled meanwhile.
    more = [new(queue="a"), new(queue="a", max_stalls=0), new(queue="a")]
    ids += [r.id for r in await backend.enqueue(more)]
    leases = await backend.claim(["a"], "w", 4, SHORT)
    assert len(leases) == 4
    await backend.cancel(ids[-1])
    await check()

    async def reclaimed() -> bool:
        return bool(await backend.reclaim_expired())

    await eventually(reclaimed, "the expired leases to be reclaimed")
    await check()
    # Finished jobs of both queues, then each way of deleting them.
    ended = []
    for _ in range(3):
        ended += await backend.claim(["a", "b"], "w", 10, LONG)
    await backend.finish([(lease, completed()) for lease in ended[:-1]])
    await backend.finish([(ended[-1], failed())])
    await check()
    await backend.purge(states=[JobState.COMPLETED], keep_last=1, queue="a")
    await check()
    await backend.purge(states=[JobState.COMPLETED, JobState.FAILED], keep_last=0)
    await check()
    held = new(queue="b")
    held = replace(held, keep_for=0.0, hold=True)
    ids += [r.id for r in await backend.enqueue([held, replace(new(queue="b"), keep_for=0.0)])]
    (lease_a, lease_b) = await backend.claim(["b"], "w", 2, LONG)
    await backend.finish([(lease_a, completed()), (lease_b, completed())])
    await backend.purge(states=[JobState.COMPLETED], retention=True)  # its own keep_for
    await check()
    await backend.release([held.id])  # the last holder gone: it goes now
    await check()
    ids += [r.id for r in await backend.enqueue([new(queue="a")])]
    await backend.cancel(ids[-1])
    await backend.purge(states=[JobState.CANCELLED], older_than=0.0)
    await check()


# -- cancel -----------------------------------------------------------------------------
async def test_cancel_queued_is_immediate(backend: Backend, peer: Backend) -> None:
    job_id = await enqueue_one(backend)
    scheduled = await enqueue_one(backend, new(delay=60))
    assert await peer.cancel(job_id) is JobState.CANCELLED
    assert await peer.cancel(scheduled) is JobState.CANCELLED
    for jid in (job_id, scheduled):
        job = await must_get(backend, jid)
        assert job.state is JobState.CANCELLED
        assert job.finished_at is not None
    assert await backend.claim(["q"], "w1", 10, LONG) == []


async def test_cancel_active_is_reported_by_renew(backend: Backend, peer: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    assert await peer.cancel(job_id) is JobState.ACTIVE
    assert (await must_get(backend, job_id)).state is JobState.ACTIVE

    result = await backend.renew([lease])
    assert result.cancel == {job_id}
    assert result.lost == frozenset()
    assert (await backend.renew([lease])).cancel == {job_id}  # until the worker acts on it


async def test_cancel_active_then_worker_finishes_cancelled(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    await backend.cancel(job_id)
    assert await backend.finish([(lease, Outcome("cancelled"))]) == [True]
    assert (await must_get(backend, job_id)).state is JobState.CANCELLED


async def test_cancel_active_whose_worker_died_ends_cancelled(backend: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=5))
    await claim_one(backend, lease=0.2)
    assert await backend.cancel(job_id) is JobState.ACTIVE

    async def reclaimed() -> bool:
        return job_id in await backend.reclaim_expired()

    await eventually(reclaimed, "the cancelled job's lease to be reclaimed")
    assert (await must_get(backend, job_id)).state is JobState.CANCELLED
    assert await backend.claim(["q"], "w1", 10, LONG) == []


async def test_cancel_finished_or_unknown(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    lease = await claim_one(backend)
    await backend.finish([(lease, completed(5))])
    assert await backend.cancel(job_id) is JobState.COMPLETED
    assert (await must_get(backend, job_id)).result == 5
    assert await backend.cancel("0" * 32) is None


# -- retry ------------------------------------------------------------------------------
async def test_retry_failed_job(backend: Backend, peer: Backend) -> None:
    job_id = await enqueue_one(backend, new(max_attempts=2))
    lease = await claim_one(backend)
    await backend.finish([(lease, Outcome("retry", error=error()))])
    lease = await claim_one(backend)
    await backend.finish([(lease, failed())])
    job = await must_get(backend, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 2)

    assert await peer.retry(job_id) is True
    job = await must_get(backend, job_id)
    assert job.state is JobState.QUEUED
    assert job.attempts == 0
    assert job.error is None
    assert job.finished_at is None
    again = await claim_one(backend)
    assert (again.job_id, again.attempts) == (job_id, 1)


async def test_retry_cancelled_job(backend: Backend) -> None:
    job_id = await enqueue_one(backend)
    await backend.cancel(job_id)
    assert await backend.retry(job_id) is True
    assert (await must_get(backend, job_id)).state is JobState.QUEUED
    assert (await claim_one(backend)).job_id == job_id


async def test_retry_refuses_completed_live_and_unknown(backend: Backend) -> None:
    done = await enqueue_one(backend)
    lease = await claim_one(backend)
    await backend.finish([(lease, completed("kept"))])
    queued = await enqueue_one(backend)
    active = await enqueue_one(backend)
    lease = await claim_one(backend)
    assert lease.job_id == queued
    assert await backend.retry(done) is False
    assert await backend.retry(queued) is False
    assert await backend.retry(lease.job_id) is False
    assert await backend.retry("0" * 32) is False
    job = await must_get(backend, done)
    assert (job.state, job.result) == (JobState.COMPLETED, "kept")
    assert (await must_get(backend, queued)).attempts == 1
    assert (await must_get(backend, active)).state is JobState.QUEUED


async def test_retry_respects_a_dedup_key_held_by_a_newer_job(backend: Backend) -> None:
    old = await enqueue_one(backend, new(dedup_key="k"))
    await backend.cancel(old)
    newer = await enqueue_one(backend, new(dedup_key="k"))
    assert await backend.retry(old) is False
    assert (await must_get(backend, old)).state is JobState.CANCELLED
    await backend.cancel(newer)
    assert await backend.retry(old) is True
    (dup,) = await backend.enqueue([new(dedup_key="k")])
    assert (dup.id, dup.created) == (old, False)


# -- purge ------------------------------------------------------------------------------
async def _finished(backend: Backend, n: int, how: str) -> list[str]:
    ids = []
    for _ in range(n):
        job_id = await enqueue_one(backend)
        lease = await claim_one(backend)
        await backend.finish([(lease, completed() if how == "completed" else failed())])
        ids.append(job_id)
        await asyncio.sleep(0.002)  # distinct finish times
    return ids


async def test_purge_keep_last_per_state(backend: Backend) -> None:
    done = await _finished(backend, 4, "completed")
    bad = await _finished(backend, 3, "failed")
    live = await enqueue_one(backend)

    deleted = await backend.purge(states={JobState.COMPLETED}, keep_last=1)
    assert deleted == 3
    assert [await backend.get(x) is None for x in done] == [True, True, True, False]
    assert [await backend.get(x) is not None for x in bad] == [True, True, True]

    deleted = await backend.purge(states={JobState.COMPLETED, JobState.FAILED}, keep_last=2)
    assert deleted == 1
    assert await backend.get(bad[0]) is None
    assert await backend.get(done[-1]) is not None
    assert await backend.get(live) is not None


async def test_purge_older_than(backend: Backend) -> None:
    old = await _finished(backend, 2, "completed")
    await asyncio.sleep(0.7)
    young = await _finished(backend, 1, "completed")

    deleted = await backend.purge(states={JobState.COMPLETED}, older_than=0.4)
    assert deleted == 2
    assert [await backend.get(x) for x in old] == [None, None]
    assert await backend.get(young[0]) is not None
    assert await backend.purge(states={JobState.COMPLETED}, older_than=60) == 0


async def test_purge_leaves_live_jobs_alone(backend: Backend) -> None:
    queued = await enqueue_one(backend)
    scheduled = await enqueue_one(backend, new(delay=60))
    await enqueue_one(backend)
    active = (await claim_one(backend)).job_id
    cancelled = await enqueue_one(backend)
    await backend.cancel(cancelled)

    deleted = await backend.purge(states=set(JobState), keep_last=0)
    assert deleted == 1
    assert await backend.get(cancelled) is None
    for job_id in (queued, scheduled, active):
        assert await backend.get(job_id) is not None
    assert await backend.purge(states=set(JobState), older_than=0) == 0


async def test_purge_by_queue(backend: Backend) -> None:
    ids = {}
    for q in ("a", "b"):
        ids[q] = await enqueue_one(backend, new(queue=q))
        lease = await claim_one(backend, queue=q)
        await backend.finish([(lease, completed())])
    assert await backend.purge(states={JobState.COMPLETED}, keep_last=0, queue="a") == 1
    assert await backend.get(ids["a"]) is None
    assert await backend.get(ids["b"]) is not None
