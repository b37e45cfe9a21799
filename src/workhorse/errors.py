"""The error tree. Every error workhorse raises is a ``WorkhorseError``.

::

    WorkhorseError
    ├── ConfigError            bad settings, unknown option, unknown queue, bad URL
    │   └── UnknownTaskError   a task name the registry does not know
    ├── PayloadError           data that is not JSON, too large, or fails validation
    ├── BackendError           the store failed or cannot be reached
    │   └── BackendUnavailable the store cannot be reached or the connection broke
    │                          (also the builtin ConnectionError)
    ├── LeaseLost              a renew or finish by a worker that no longer owns the job
    ├── DuplicateJob           a singleton enqueue with ``on_duplicate="raise"``
    └── JobError               the outcome of a job a caller waited on
        ├── JobFailed          the task raised; carries the remote type, message, traceback
        ├── JobCancelled       the job was cancelled
        └── RunTimeout         the caller stopped waiting (the job may still run)
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workhorse.job import Job


class WorkhorseError(Exception):
    """Base of every error raised by workhorse."""


class ConfigError(WorkhorseError):
    """A setting, option, queue or URL is invalid; the message names the valid ones."""


class UnknownTaskError(ConfigError, LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        listed = ", ".join(self.known) if self.known else "none registered"
        super().__init__(
            f"unknown task {name!r}; known tasks: {listed}. "
            "Register it with @app.task or app.discover(...)."
        )


class PayloadError(WorkhorseError, ValueError):
    """The payload cannot be enqueued: not JSON, too large, or invalid for the task."""


class BackendError(WorkhorseError):
    """The store failed or cannot be reached."""


class BackendUnavailable(BackendError, ConnectionError):
    """The store cannot be reached, or the connection to it broke; the message names the
    URL (password masked) and what to check. Also the builtin ``ConnectionError``, so code
    that retries on lost connections catches it without naming workhorse."""


class LeaseLost(WorkhorseError):
    """The worker no longer owns the job (its lease expired or it was reclaimed)."""


class DuplicateJob(WorkhorseError):
    def __init__(self, existing: Job) -> None:
        self.existing = existing
        super().__init__(
            f"a live job {existing.id} of task {existing.task!r} holds the same singleton key"
        )


class JobError(WorkhorseError):
    """A job that a caller waited on did not complete."""

    def __init__(self, message: str, job: Job | None = None) -> None:
        super().__init__(message)
        self.job = job


class JobFailed(JobError):
    """The task raised. ``type``, ``message`` and ``traceback`` come from the worker."""

    def __init__(self, job: Job) -> None:
        error: dict[str, Any] = job.error or {}
        self.type: str = str(error.get("type", "Error"))
        self.message: str = str(error.get("message", ""))
        self.traceback: str = str(error.get("traceback", ""))
        super().__init__(
            f"job {job.id} ({job.task}) failed after {job.attempts} attempt(s): "
            f"{self.type}: {self.message}",
            job,
        )


class JobCancelled(JobError):
    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} ({job.task}) was cancelled", job)


class RunTimeout(JobError, TimeoutError):
    def __init__(self, job_id: str, timeout: float) -> None:
        self.job_id = job_id
        super().__init__(
            f"job {job_id} did not finish within {timeout:g}s; it may still run. "
            f"Follow it with app.get_job({job_id!r})."
        )


def error_info(exc: BaseException, tb: bool = True) -> dict[str, Any]:
    """An exception as a job's error record: type, message and traceback, clipped."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails must still end its job
        message = f"<unprintable {name}>"
    return {
        "type": name,
        "message": _clip(message, MAX_ERROR_MESSAGE),
        "traceback": _clip("".join(traceback.format_exception(exc)), MAX_TRACEBACK) if tb else "",
    }


# Characters of an error kept with the job: its record, its events and Redis's published
# finish carry it, so one huge exception message must not make them huge.
MAX_ERROR_MESSAGE = 16_384
MAX_TRACEBACK = 65_536


def _clip(text: str, limit: int) -> str:
    """The start and the end (where the raise is) of a text over ``limit`` characters."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"
