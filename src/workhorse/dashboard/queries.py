"""Reads behind the pages, each bounded: a page of jobs, a search over the newest jobs of
a filter, a job's recent events. Nothing here grows with the number of jobs stored."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from workhorse.client import Client
from workhorse.job import Event, Job, JobState

PAGE = 50
SEARCH_WINDOW = 2000  # newest jobs of the filter a text search looks through
# Events from a job's creation on that its page looks through (a store read each 1,000).
EVENT_WINDOW = 2000
CLOCK_SLACK = 5.0  # seconds: writers' clocks differ a little, and an event's time is its writer's


def cursor_of(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"o": offset})).decode().rstrip("=")


def offset_of(cursor: str | None) -> int:
    """The offset in a cursor this dashboard gave; 0 for none or a damaged one."""
    if not cursor:
        return 0
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = value["o"]
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        return 0
    return offset if isinstance(offset, int) and 0 <= offset < 2**62 else 0


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None
    searched: int | None  # jobs a text search looked through, None when not searching


def _matches(job: Job, needle: str) -> bool:
    if needle in job.id or needle in job.task.lower():
        return True
    if job.dedup_key and needle in job.dedup_key.lower():
        return True
    return needle in orjson.dumps(job.data, default=str).decode().lower()


async def job_page(
    client: Client,
    *,
    queue: str | None,
    state: JobState | None,
    task: str | None,
    text: str,
    cursor: str | None,
) -> JobPage:
    """A page of jobs newest first; with ``text``, the matches among the filter's newest
    SEARCH_WINDOW jobs (an exact job id is looked up directly)."""
    text = text.strip().lower()
    if not text:
        offset = offset_of(cursor)
        jobs = await client.jobs(queue=queue, state=state, task=task, limit=PAGE, offset=offset)
        nxt = cursor_of(offset + PAGE) if len(jobs) == PAGE else None
        return JobPage(jobs, nxt, None)
    if len(text) <= 64 and all(c in "0123456789abcdef" for c in text):
        exact = await client.get_job(text)
        if exact is not None and queue in (None, exact.queue):
            return JobPage([exact], None, 1)
    # One read of the whole window: a store pages by offset, so reading it in pieces
    # would read the first ones again for each later piece.
    window = await client.jobs(queue=queue, state=state, task=task, limit=SEARCH_WINDOW)
    found = [j for j in window if _matches(j, text)]
    return JobPage(found[:PAGE], None, len(window))


async def recent_events(client: Client, job: Job) -> list[Event]:
    """The job's events among the EVENT_WINDOW events logged from its creation on. Event ids
    are not counts (Redis: milliseconds and a sequence), so the start is found by time, in
    about log2(newest id) one-event reads."""
    start = await _first_after(client, job.created_at.timestamp() - CLOCK_SLACK)
    out: list[Event] = []
    after = start
    for _ in range(EVENT_WINDOW // 1000):
        page = await client.events(after, 1000)
        out += [e for e in page if e.job_id == job.id]
        if len(page) < 1000:
            break
        after = page[-1].id
    return out


async def _first_after(client: Client, t: float) -> int:
    """A cursor whose next event is the last one logged before ``t`` (or the log's start)."""

    async def before(x: int) -> bool:  # the event after cursor x was logged before t
        page = await client.events(x, 1)
        return bool(page) and page[0].at < t

    if not await before(0):
        return 0
    lo, hi = 0, 1
    while await before(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if await before(mid) else (lo, mid)
    return lo


def attempts_of(events: list[Event]) -> list[dict[str, Any]]:
    """One row per attempt from the job's events: when it started, its worker, its end."""
    rows: list[dict[str, Any]] = []
    for e in events:
        if e.type == "job.started":
            rows.append({"started": e.at, "worker": e.data.get("worker"), "ended": None})
        elif rows and rows[-1]["ended"] is None and e.type != "job.progress":
            rows[-1]["ended"] = e.at
            rows[-1]["outcome"] = e.type.removeprefix("job.")
    return rows
