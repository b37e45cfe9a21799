"""Rows of the jobs table to Job records and back: decoding, enqueue arrays, quarantine plans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workhorse import codec
from workhorse.backends import loglines
from workhorse.backends.quarantine import quarantine_error, quarantined
from workhorse.job import Job, JobState, NewJob, to_datetime

STATES = {s.value: s for s in JobState}
_SCHED = JobState.SCHEDULED


def enqueue_params(jobs: Sequence[NewJob]) -> tuple[list[Any], ...]:
    return (
        [j.id for j in jobs],
        [j.task for j in jobs],
        [j.queue for j in jobs],
        [j.data for j in jobs],
        [j.priority for j in jobs],
        [j.max_attempts for j in jobs],
        [j.timeout for j in jobs],
        [j.lease for j in jobs],
        [j.dedup_key for j in jobs],
        [j.at for j in jobs],
        [float(j.delay or 0.0) for j in jobs],
        [j.keep_for for j in jobs],
        [int(j.hold) for j in jobs],
        [j.max_stalls for j in jobs],
    )


def enqueue_row(j: NewJob) -> tuple[Any, ...]:
    """One job's ``enqueue_params``, as plain parameters (the statement for one job)."""
    return (
        j.id, j.task, j.queue, j.data, j.priority, j.max_attempts, j.timeout, j.lease,
        j.dedup_key, j.at, float(j.delay or 0.0), j.keep_for, int(j.hold), j.max_stalls,
    )  # fmt: skip


def job_of(row: tuple[Any, ...]) -> Job:
    (job_id, task, queue, state, data, priority, attempts, max_attempts, created_at, run_at,
     started_at, finished_at, progress, result, error, logs, timeout, worker, expires_at,
     dedup_key, scheduled, keep_for, stalls, max_stalls, logs_dropped) = row  # fmt: skip
    st = _SCHED if state == "queued" and scheduled else STATES[state]
    return Job(
        id=job_id, task=task, queue=queue, state=st, data=codec.loads(bytes(data)),
        priority=priority, attempts=attempts, max_attempts=max_attempts,
        created_at=to_datetime(created_at),  # type: ignore[arg-type]
        run_at=to_datetime(run_at),  # type: ignore[arg-type]
        started_at=to_datetime(started_at), finished_at=to_datetime(finished_at),
        progress=progress, result=None if result is None else codec.loads(bytes(result)),
        error=error, logs=loglines.shown(list(logs or ()), logs_dropped), timeout=timeout,
        worker=worker,
        lease_expires_at=to_datetime(expires_at), dedup_key=dedup_key, keep_for=keep_for,
        stalls=stalls, max_stalls=max_stalls,
    )  # fmt: skip


def salvage(row: tuple[Any, ...]) -> tuple[list[Any], dict[str, Any] | None, bool]:
    """The plan for a row whose data or result is not JSON: ``(fixed, error, clear)``, the
    row with bad columns nulled, the quarantine error with their raw bytes (None when it
    was quarantined before), and whether the stored result must be cleared."""
    fixed = list(row)
    reasons: dict[str, str] = {}
    raw: dict[str, bytes] = {}
    for name, i in (("data", 4), ("result", 13)):
        if row[i] is None:
            continue
        value = bytes(row[i])
        try:
            codec.loads(value)
        except ValueError as exc:
            reasons[name], raw[name] = str(exc), value
            fixed[i] = b"null" if name == "data" else None
    if not reasons or (reasons.keys() == {"data"} and quarantined(row[14])):
        return fixed, None, False
    return fixed, quarantine_error(raw, reasons, row[14]), "result" in reasons
