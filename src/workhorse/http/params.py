"""The path and query parameters the REST routes share."""

from typing import Annotated

from fastapi import Path

from workhorse.job import JOB_ID_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$"
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
JobId = Annotated[str, Path(pattern=f"^{JOB_ID_PATTERN}$")]
# The event log's ids: 64-bit integers, but PostgreSQL's are positions xid * 10**19 + id.
MAX_CURSOR = 10**40 - 1


def resume_after(after: int, last_event_id: str | None) -> int:
    """Where a stream starts: after ``after``, or after the Last-Event-ID a reconnecting
    client sends, whichever is later (a header that is no cursor is ignored)."""
    text = last_event_id or ""
    if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_CURSOR)):
        return max(after, int(text))
    return after


MAX_WAIT = 60.0  # seconds a ?wait= may hold a request (longer: poll GET /jobs/{id})
