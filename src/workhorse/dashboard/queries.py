"""Reads behind the pages, each bounded: a page of jobs after a cursor, a search through
a window of the filter's jobs, a job's events by its id. Nothing here grows with the number
of jobs stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from workhorse.client import Client
from workhorse.job import Event, Job, JobKey, JobState, is_job_id

PAGE = 50
# Jobs of the filter one search request looks through, from its cursor on; the page links
# to the next window, so every job can be reached while each request stays bounded.
SEARCH_WINDOW = 500
SEARCH_READ = 250  # jobs per store read while searching: a window stops once a page matched


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
    """A page of jobs newest first after ``cursor``; with ``text``, the matches among the
    next SEARCH_WINDOW jobs of the filter (an exact job id is looked up directly)."""
    text = text.strip().lower()
    after = JobKey.from_cursor(cursor)
    if not text:
        jobs = await client.jobs(queue=queue, state=state, task=task, limit=PAGE, after=after)
        nxt = JobKey.of(jobs[-1]).cursor() if len(jobs) == PAGE else None
        return JobPage(jobs, nxt, None)
    if after is None and is_job_id(text):
        exact = await client.get_job(text)
        if exact is not None and queue in (None, exact.queue):
            return JobPage([exact], None, 1)
    found: list[Job] = []
    searched = 0
    while searched < SEARCH_WINDOW and len(found) < PAGE:
        want = min(SEARCH_READ, SEARCH_WINDOW - searched)
        read = await client.jobs(queue=queue, state=state, task=task, limit=want, after=after)
        for job in read:
            searched += 1
            after = JobKey.of(job)
            if _matches(job, text):
                found.append(job)
                if len(found) == PAGE:
                    break  # the next window starts after the last job looked at
        if len(read) < want and len(found) < PAGE:
            return JobPage(found, None, searched)  # the filter's oldest job was looked at
    return JobPage(found, after.cursor() if after is not None else None, searched)


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
