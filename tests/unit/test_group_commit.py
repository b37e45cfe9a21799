"""GroupCommit: concurrent enqueue calls share writes, each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from workhorse import codec
from workhorse.backends.group import GroupCommit
from workhorse.errors import BackendError
from workhorse.job import EnqueueResult, JobState, NewJob, new_job_id


def _job(task: str = "t") -> NewJob:
    return NewJob(new_job_id(), task, "q", codec.dumps(None))


class Store:
    """A write that takes a moment, refuses a job of task 'bad' and records each write."""

    def __init__(
        self, fail_with: BaseException | None = None, refusal: type[Exception] = ValueError
    ) -> None:
        self.writes: list[list[str]] = []
        self.fail_with = fail_with
        self.refusal = refusal

    async def run(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        await asyncio.sleep(0.005)
        if self.fail_with is not None:
            raise self.fail_with
        if any(j.task == "bad" for j in jobs):
            raise self.refusal("refused: task 'bad'")
        self.writes.append([j.id for j in jobs])
        return [EnqueueResult(j.id, True, JobState.QUEUED) for j in jobs]


async def test_a_lone_call_runs_at_once_and_concurrent_calls_share_writes() -> None:
    store = Store()
    group = GroupCommit(store.run, lanes=2)
    (one,) = await group.submit([_job()])
    assert store.writes == [[one.id]]
    calls = [[_job() for _ in range(1 + i % 3)] for i in range(50)]
    got = await asyncio.gather(*(group.submit(c) for c in calls))
    for jobs, results in zip(calls, got, strict=True):
        assert [r.id for r in results] == [j.id for j in jobs]
    assert len(store.writes) < 10  # 2 lanes: the first two alone, the rest in a few writes
    assert sorted(i for w in store.writes[1:] for i in w) == sorted(j.id for c in calls for j in c)


async def test_a_refused_call_fails_alone_and_the_others_are_written_once() -> None:
    store = Store()
    group = GroupCommit(store.run, lanes=1)
    calls = [[_job()] for _ in range(20)]
    calls[13] = [_job("bad")]
    got = await asyncio.gather(*(group.submit(c) for c in calls), return_exceptions=True)
    assert isinstance(got[13], ValueError)
    written = [i for w in store.writes for i in w]
    assert sorted(written) == sorted(c[0].id for k, c in enumerate(calls) if k != 13)
    assert len(written) == len(set(written))


class Refused(BackendError):
    """A store's error reply: a BackendError, but a refusal, not an unknown outcome."""


async def test_a_refusal_among_the_unknown_errors_subclasses_still_fails_alone() -> None:
    store = Store(refusal=Refused)
    group = GroupCommit(store.run, lanes=1, refused=(Refused,))
    calls = [[_job()] for _ in range(20)]
    calls[13] = [_job("bad")]
    got = await asyncio.gather(*(group.submit(c) for c in calls), return_exceptions=True)
    assert isinstance(got[13], Refused)
    assert [k for k, g in enumerate(got) if isinstance(g, BaseException)] == [13]
    written = [i for w in store.writes for i in w]
    assert sorted(written) == sorted(c[0].id for k, c in enumerate(calls) if k != 13)


async def test_an_unknown_outcome_is_every_callers_error() -> None:
    store = Store(fail_with=BackendError("no answer in 30s"))
    group = GroupCommit(store.run, lanes=1)
    got = await asyncio.gather(*(group.submit([_job()]) for _ in range(10)), return_exceptions=True)
    assert all(isinstance(g, BackendError) for g in got)


async def test_a_cancelled_waiting_call_is_left_out_and_close_fails_the_rest() -> None:
    store = Store()
    group = GroupCommit(store.run, lanes=1)
    first = asyncio.create_task(group.submit([_job()]))
    await asyncio.sleep(0)
    gone_job, kept_job = _job(), _job()
    gone = asyncio.create_task(group.submit([gone_job]))
    kept = asyncio.create_task(group.submit([kept_job]))
    await asyncio.sleep(0)
    gone.cancel()
    await first
    await kept
    assert gone_job.id not in [i for w in store.writes for i in w]
    late = asyncio.create_task(group.submit([_job()]))
    blocked = asyncio.create_task(group.submit([_job()]))
    await asyncio.sleep(0)
    group.close()
    with pytest.raises(BackendError):
        await blocked
    late.cancel()


async def test_gathered_callers_answered_together_come_back_in_one_write() -> None:
    # 100 producers, each enqueueing again as soon as it is answered (a web server's
    # handlers): the callers one write answered resume in one turn of the loop and go
    # together, instead of taking the free lanes one by one (a write, a commit, each).
    store = Store()
    group = GroupCommit(store.run, lanes=4, gather=True)

    async def producer() -> None:
        for _ in range(10):
            await group.submit([_job()])

    await asyncio.gather(*(producer() for _ in range(100)))
    assert sum(len(w) for w in store.writes) == 1000
    assert len(store.writes) <= 30  # 77 writes, 67 of one job, when each took a free lane
    (lone,) = await group.submit([_job()])  # nothing in flight: alone, at once
    assert store.writes[-1] == [lone.id]
