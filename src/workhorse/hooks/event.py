"""What a hook's handler gets: ``JobEvent``, a durable event joined with its job's record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from workhorse.client import Client
from workhorse.job import Event, Job


@dataclass(slots=True)
class JobEvent:
    """One event of the durable log as a hook sees it.

    ``data`` is the job's payload and ``result`` its return value, read from the job's
    record when the listener reads the event; ``error`` (type, message, traceback) is the
    one the event itself carries. ``missing`` is True when the record was deleted (its
    retention ran out) before the listener read the event: ``data`` and ``result`` are
    then None."""

    id: int
    type: str
    job_id: str | None
    task: str | None
    queue: str | None
    attempt: int | None = None
    data: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    at: float = 0.0  # when the event happened (the store's clock)
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    missing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # the event's own data, as logged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobEvent:
        return cls(**d)


def _ts(job: Job, name: str) -> float | None:
    value = getattr(job, name)
    return None if value is None else float(value.timestamp())


def join(event: Event, job: Job | None) -> JobEvent:
    """The event with its job's payload, result and times (``job`` None: not found)."""
    d = event.data or {}
    attempt = d.get("attempt")
    out = JobEvent(
        event.id,
        event.type,
        event.job_id,
        event.task,
        event.queue,
        attempt if isinstance(attempt, int) else None,
        error=d.get("error"),
        at=event.at,
        extra=dict(d),
        missing=event.job_id is not None and job is None,
    )
    if job is not None:
        out.data = job.data
        out.result = job.result if event.type == "job.completed" else None
        out.created_at = _ts(job, "created_at")
        out.started_at = _ts(job, "started_at")
        out.finished_at = _ts(job, "finished_at")
        if out.error is None and event.type == "job.failed":
            out.error = job.error
    return out


# Records read per call: a bounded request whatever the page of events.
READS_AT_ONCE = 500


async def enrich(client: Client, events: list[Event]) -> list[JobEvent]:
    """Join each event with its job's record, reading the records of a page at once."""
    ids = sorted({e.job_id for e in events if e.job_id is not None})
    records: dict[str, Job] = {}
    for start in range(0, len(ids), READS_AT_ONCE):
        records.update(await client.get_jobs(ids[start : start + READS_AT_ONCE]))
    return [join(e, records.get(e.job_id) if e.job_id else None) for e in events]
