"""What the API answers with: pydantic models, so the OpenAPI document describes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from workhorse.hooks import GroupStatus, Parked
from workhorse.job import Event, Job, WorkerInfo
from workhorse.schedules import ScheduleInfo


class JobOut(BaseModel):
    id: str
    task: str
    queue: str
    state: str
    data: Any = None
    priority: int
    attempts: int
    max_attempts: int
    stalls: int
    created_at: datetime
    run_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    timeout: float | None = None
    worker: str | None = None
    dedup_key: str | None = None
    http_call: bool  # a record of an inline call to an http task, not a queued job


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None  # pass as ?cursor= for the next page; None: the last page


class Enqueued(BaseModel):
    id: str
    task: str
    queue: str
    status: str  # created | duplicate | replaced | skipped
    state: str
    replayed: bool = False  # an Idempotency-Key seen before: the first request's job


class LogLine(BaseModel):
    at: float
    level: str
    message: str
    fields: dict[str, Any] | None = None


class EventOut(BaseModel):
    id: int  # the log's cursor (pass it as ?after= or Last-Event-ID)
    # The id as text, for clients whose numbers keep 53 bits (JavaScript): Redis's ids and
    # PostgreSQL's positions are larger.
    cursor: str
    type: str
    job_id: str | None = None
    task: str | None = None
    queue: str | None = None
    data: dict[str, Any]
    at: float


class QueueOut(BaseModel):
    name: str
    paused: bool
    counts: dict[str, int]


class ScheduleIn(BaseModel):
    task: str
    cron: str
    timezone: str | None = None
    data: Any = None


class ScheduleOut(BaseModel):
    name: str
    task: str
    cron: str
    timezone: str | None
    data: Any = None
    source: str
    next_run: datetime | None
    last_run: datetime | None
    last_job_id: str | None


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: dict[str, int]
    started_at: float
    active: int
    processed: int
    last_seen: float
    paused: bool = False  # claims nothing until resumed (POST /workers/{id}/resume)
    tasks: list[str] = []  # the task names it can run
    flows: list[str] = []  # the flows whose steps it runs


class RetryIn(BaseModel):
    """A retry's body: ``data`` replaces the job's payload, checked as an enqueue checks it
    (leave ``data`` out, or send no body, to keep the payload)."""

    data: Any = None


class Done(BaseModel):
    ok: bool
    state: str | None = None
    deleted: int | None = None


class Health(BaseModel):
    ok: bool
    backend: str
    now: float


class GroupOut(BaseModel):
    group: str
    partitions: int
    cursor: int  # the slowest partition's
    behind: int  # unread events
    behind_capped: bool  # behind is a floor: counting stopped at the cap
    oldest_unread_age: float | None  # seconds; None when nothing is unread
    listeners: int
    parked: int
    lost_incidents: int
    lost_events: int | None  # at most this many lost; None: the store cannot count


class HooksOut(BaseModel):
    groups: list[GroupOut]
    subscribed: list[str]  # the hooks this server can replay


class ParkedOut(BaseModel):
    id: str
    group: str
    hook: str
    event: dict[str, Any]  # the job event the hook was called with
    error: dict[str, Any]  # type, message (and traceback, to a caller with a token)
    attempts: int
    at: float


class ParkedList(BaseModel):
    parked: list[ParkedOut]
    next_cursor: str | None  # pass as ?cursor= for the next page; None: the last page


def group_out(s: GroupStatus) -> GroupOut:
    return GroupOut(
        group=s.group,
        partitions=s.partitions,
        cursor=s.cursor,
        behind=s.behind,
        behind_capped=s.behind_capped,
        oldest_unread_age=s.oldest_unread_age,
        listeners=s.listeners,
        parked=s.parked,
        lost_incidents=s.lost_incidents,
        lost_events=s.lost_events,
    )


def _no_traceback(error: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in error.items() if k != "traceback"}


def parked_out(p: Parked, traceback: bool) -> ParkedOut:
    event = p.event.to_dict()
    if not traceback and isinstance(event.get("error"), dict):
        event["error"] = _no_traceback(event["error"])
    return ParkedOut(
        id=p.id,
        group=p.group,
        hook=p.hook,
        event=event,
        error=p.error if traceback else _no_traceback(p.error),
        attempts=p.attempts,
        at=p.at,
    )


def job_out(job: Job, call_prefix: str, traceback: bool) -> JobOut:
    error = job.error
    if error is not None and not traceback:
        error = {k: v for k, v in error.items() if k != "traceback"}
    return JobOut(
        id=job.id,
        task=job.task,
        queue=job.queue,
        state=str(job.state),
        data=job.data,
        priority=job.priority,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        stalls=job.stalls,
        created_at=job.created_at,
        run_at=job.run_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=job.progress,
        result=job.result,
        error=error,
        timeout=job.timeout,
        worker=job.worker,
        dedup_key=job.dedup_key,
        http_call=job.queue.startswith(call_prefix),
    )


def event_out(e: Event) -> EventOut:
    return EventOut(
        id=e.id,
        cursor=str(e.id),
        type=e.type,
        job_id=e.job_id,
        task=e.task,
        queue=e.queue,
        data=e.data,
        at=e.at,
    )


def schedule_out(s: ScheduleInfo) -> ScheduleOut:
    return ScheduleOut(
        name=s.name,
        task=s.task,
        cron=s.pattern,
        timezone=s.timezone,
        data=s.data,
        source=s.source,
        next_run=s.next_run,
        last_run=s.last_run,
        last_job_id=s.last_job_id,
    )


def worker_out(w: WorkerInfo) -> WorkerOut:
    return WorkerOut(
        id=w.id,
        host=w.host,
        pid=w.pid,
        queues=w.queues,
        started_at=w.started_at,
        active=w.active,
        processed=w.processed,
        last_seen=w.last_seen,
        paused=w.paused,
        tasks=w.tasks,
        flows=w.flows,
    )
