"""Rows of wh_jobs to Job records, and the salvage plan for a row that does not decode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from workhorse import codec
from workhorse.backends import loglines
from workhorse.backends.quarantine import quarantine_error, quarantined
from workhorse.job import MAX_STALLS, Job, JobState, to_datetime


def to_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# Columns holding JSON, by position in statements.JOB_COLS; a row whose column does not
# parse is quarantined (see salvage).
JSON_COLUMNS = (("data", 4), ("progress", 12), ("result", 13), ("error", 14), ("logs", 15))
# Numeric columns: (name, position, what a quarantined row shows instead of garbage).
NUMBER_COLUMNS = (
    ("priority", 5, 0), ("attempts", 6, 0), ("max_attempts", 7, 1), ("created_at", 8, 0.0),
    ("run_at", 9, 0.0), ("started_at", 10, None), ("finished_at", 11, None),
    ("timeout", 16, None), ("expires_at", 18, None), ("keep_for", 20, None),
    ("stalls", 21, 0), ("max_stalls", 22, MAX_STALLS),
)  # fmt: skip
# Columns a quarantine resets to the salvaged value (their bytes are in the error).
RESETTABLE = (
    ("progress", 12), ("result", 13), ("logs", 15), ("priority", 5), ("attempts", 6),
    ("max_attempts", 7), ("created_at", 8), ("run_at", 9), ("started_at", 10),
    ("timeout", 16), ("stalls", 21), ("max_stalls", 22),
)  # fmt: skip
STORED_STATES = frozenset(("queued", "scheduled", "active", "completed", "failed", "cancelled"))


def public_state(state: str, run_at: float, now: float) -> JobState:
    """The public state of a stored one: a scheduled job whose run_at passed is queued."""
    if state == "scheduled" and run_at <= now:
        return JobState.QUEUED
    # A dict before the enum's call (once per job of a bulk enqueue); the call raises
    # ValueError for a state no workhorse wrote, which decode's caller salvages.
    return _STATES.get(state) or JobState(state)


_STATES = {state.value: state for state in JobState}


def decode(row: Sequence[Any], now: float) -> Job:
    (
        id_,
        task,
        queue,
        state,
        data,
        priority,
        attempts,
        max_attempts,
        created_at,
        run_at,
        started_at,
        finished_at,
        progress,
        result,
        error,
        logs,
        timeout,
        worker,
        expires_at,
        dedup_key,
        keep_for,
        stalls,
        max_stalls,
        logs_dropped,
    ) = row
    return Job(
        id=id_,
        task=task,
        queue=queue,
        state=public_state(state, run_at, now),
        data=codec.loads(data),
        priority=priority,
        attempts=attempts,
        max_attempts=max_attempts,
        created_at=to_datetime(created_at),  # type: ignore[arg-type]
        run_at=to_datetime(run_at),  # type: ignore[arg-type]
        started_at=to_datetime(started_at),
        finished_at=to_datetime(finished_at),
        progress=None if progress is None else orjson.loads(progress),
        result=None if result is None else codec.loads(result),
        error=None if error is None else orjson.loads(error),
        logs=loglines.shown([] if logs is None else orjson.loads(logs), logs_dropped),
        timeout=timeout,
        worker=worker,
        lease_expires_at=to_datetime(expires_at),
        dedup_key=dedup_key,
        keep_for=keep_for,
        stalls=stalls,
        max_stalls=max_stalls,
    )


def salvage(row: Sequence[Any]) -> tuple[list[Any], dict[str, Any] | None, dict[str, Any]]:
    """The plan for a row that does not decode (written by something else, or damaged):
    ``(fixed, error, reset)`` where ``fixed`` is the row with bad columns replaced, ``error``
    the quarantine error with the raw bytes of each bad column (None when the row was
    quarantined before: the data column keeps its bytes), and ``reset`` the columns to
    overwrite in the store so the row reads from now on."""
    fixed = list(row)
    reasons: dict[str, str] = {}
    raw: dict[str, bytes] = {}
    for name, i in JSON_COLUMNS:
        value = row[i]
        if value is None:
            continue
        try:
            orjson.loads(value)
        except (ValueError, TypeError) as exc:
            reasons[name] = str(exc)
            raw[name] = value if isinstance(value, bytes) else str(value).encode()
            fixed[i] = b"null" if name == "data" else None
    if row[3] not in STORED_STATES:
        reasons["state"] = f"unknown state {row[3]!r}"
        raw["state"] = str(row[3]).encode()
    for name, i, default in NUMBER_COLUMNS:
        value = row[i]
        if value is not None and not isinstance(value, int | float):
            reasons[name] = f"not a number: {str(value)[:50]!r}"
            raw[name] = value if isinstance(value, bytes) else str(value).encode()
            fixed[i] = default
    previous = None if "error" in reasons or row[14] is None else orjson.loads(row[14])
    if reasons.keys() == {"data"} and quarantined(previous):
        return fixed, None, {}
    if not reasons:
        reasons["record"] = "a column holds a value of the wrong type"
        raw["record"] = repr(tuple(row)).encode()
    # Bad columns are reset (their bytes are in the error); only data keeps its raw bytes.
    reset = {name: fixed[i] for name, i in RESETTABLE if name in reasons}
    return fixed, quarantine_error(raw, reasons, previous), reset
