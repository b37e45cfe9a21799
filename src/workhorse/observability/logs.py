"""Structured logs: ``--log-format json`` prints one JSON object per line, and a line
logged while a job runs carries the job's id, task, attempt and queue (a context variable
the worker sets per attempt, so the handler's own ``logging`` calls carry them too)."""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

import orjson

from workhorse.job import Lease

# The lease of the attempt the current asyncio task runs, if any (its token is never logged).
current_job: contextvars.ContextVar[Lease | None] = contextvars.ContextVar(
    "workhorse_job", default=None
)

# LogRecord's own attributes: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


# Set by use_json: only the JSON formatter reads current_job, so the worker sets it only then.
active = False


def enter(lease: Lease) -> None:
    """The running asyncio task now works on this lease's attempt (cheap: one set)."""
    current_job.set(lease)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        lease = current_job.get()
        if lease is not None:
            line["job_id"], line["task"] = lease.job_id, lease.task
            line["attempt"], line["queue"] = lease.attempts, lease.queue
            line["run"] = f"{lease.job_id}.{lease.attempts}"  # one attempt of the job
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=repr).decode()


def use_json(level: str) -> None:
    """Log to stderr as JSON lines at ``level`` (the root logger's only handler)."""
    global active
    active = True
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
