"""``query(after=...)``: a keyset page starts right after the previous page's last job,
whatever was added or deleted meanwhile, ties on creation time going by id."""

from __future__ import annotations

import asyncio

from workhorse.backends import Backend
from workhorse.job import Job, JobKey, JobState

from .support import enqueue_one, new


def ids_of(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


async def pages(backend: Backend, size: int, **filters: object) -> list[str]:
    """Every job of a listing, read page after page by keyset."""
    seen: list[str] = []
    after = None
    while True:
        page = await backend.query(limit=size, after=after, **filters)  # type: ignore[arg-type]
        seen += ids_of(page)
        if len(page) < size:
            return seen
        after = JobKey.of(page[-1])


async def test_keyset_pages_neither_skip_nor_repeat_when_jobs_come_and_go(
    backend: Backend,
) -> None:
    ids = []
    for i in range(6):
        ids.append(await enqueue_one(backend, new(data={"i": i})))
        await asyncio.sleep(0.002)  # distinct creation times
    newest = ids[::-1]
    first = await backend.query(limit=2)
    assert ids_of(first) == newest[:2]
    await enqueue_one(backend, new(data={"i": "later"}))  # an offset would repeat a job
    second = await backend.query(limit=2, after=JobKey.of(first[-1]))
    assert ids_of(second) == newest[2:4]
    # The anchor deleted: its creation time still places the next page.
    assert await backend.cancel(newest[3]) is JobState.CANCELLED
    assert await backend.purge(states={JobState.CANCELLED}, keep_last=0) == 1
    third = await backend.query(limit=2, after=JobKey.of(second[-1]))
    assert ids_of(third) == newest[4:6]
    assert await backend.query(after=JobKey.of(third[-1])) == []


async def test_keyset_pages_through_jobs_created_at_one_time_by_id(backend: Backend) -> None:
    results = await backend.enqueue([new(data={"i": i}) for i in range(5)])  # one batch
    tied = sorted((r.id for r in results), reverse=True)
    jobs = await backend.query()
    assert len({j.created_at for j in jobs}) == 1, "one batch, one creation time"
    assert await pages(backend, 2) == tied
    # The anchor gone from among the tied ones: the page starts at the next id down.
    anchor = await backend.get(tied[1])
    assert anchor is not None
    assert await backend.cancel(tied[1]) is JobState.CANCELLED
    await backend.purge(states={JobState.CANCELLED}, keep_last=0)
    assert ids_of(await backend.query(after=JobKey.of(anchor))) == tied[2:]


async def test_keyset_pages_with_filters_and_across_queues(backend: Backend) -> None:
    made = []
    for i in range(8):
        job = new("send" if i % 2 else "resize", "a" if i < 4 else "b", data={"i": i})
        made.append((await enqueue_one(backend, job), job.task, job.queue))
        await asyncio.sleep(0.002)
    newest = made[::-1]
    assert await pages(backend, 3) == [i for i, _, _ in newest]
    assert await pages(backend, 1, task="send") == [i for i, t, _ in newest if t == "send"]
    assert await pages(backend, 2, queue="a") == [i for i, _, q in newest if q == "a"]
    assert await pages(backend, 2, state=JobState.QUEUED, task="resize") == [
        i for i, t, _ in newest if t == "resize"
    ]
