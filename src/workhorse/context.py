"""What a running task sees of its job: ids, attempt, log lines, progress, follow-ups."""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from workhorse import events
from workhorse.backends.loglines import line_size
from workhorse.client import Client, HasClient, client_of
from workhorse.codec import encode_payload
from workhorse.job import Job, Lease
from workhorse.task import TaskContext

if TYPE_CHECKING:
    from workhorse.task import JobHandle, Task

log = logging.getLogger("workhorse.job")

# A context's lines before its first (shared, never written to: ``_keep`` replaces them).
_NO_LINES: deque[dict[str, Any]] = deque(maxlen=0)
_NO_SIZES: deque[int] = deque(maxlen=0)


class JobContext(TaskContext):
    """Passed to a task that asks for it (a parameter annotated ``JobContext`` or named
    ``ctx``). Log lines are kept with the job and written with its next progress update or
    its outcome, so logging costs no round trip. A job keeps at most ``max_log_lines``
    lines and ``max_log_bytes`` bytes (settings) over all its attempts: the store keeps the
    newest and counts the older ones; lines not yet written are held within the same
    bounds here, and those dropped are counted with them."""

    __slots__ = (
        "_bytes",
        "_dropped",
        "_lines",
        "_logs",
        "_sizes",
        "_state",
        "cancelled",
        "client",
        "flow",
        "lease",
        "timed_out",
    )

    def __init__(self, client: Client | HasClient, lease: Lease) -> None:
        self.client = client if isinstance(client, Client) else client_of(client)
        self.lease = lease
        self.cancelled = False
        # A flow step's run (``ctx.flow``) and state (``ctx.state``), set by the flows
        # engine the worker is given; None for a job that is no step of a run.
        self.flow: Any = None
        self._state: Any = None
        self.timed_out = False  # set when the attempt ran past the job_timeout setting
        # Not yet written, and their encoded sizes: deques, so that dropping the oldest line
        # of a chatty attempt past its budget costs O(1), not a copy of the whole budget.
        # Made at the first line: most attempts log nothing, and two objects per job cost.
        self._logs: deque[dict[str, Any]] = _NO_LINES
        self._sizes: deque[int] = _NO_SIZES
        self._lines = self._bytes = 0  # not yet written
        self._dropped = 0  # lines dropped here since the last write

    @property
    def state(self) -> Any:
        """A flow step's ``ctx.state`` (None for a job that is no step of a run), made at
        its first use: a step that never reads it costs no object."""
        state = self._state
        if state is None and self.flow is not None:
            state = self._state = self.flow.make_state()
        return state

    @state.setter
    def state(self, value: Any) -> None:
        self._state = value

    @property
    def job_id(self) -> str:
        return self.lease.job_id

    @property
    def attempt(self) -> int:
        return self.lease.attempts

    @property
    def max_attempts(self) -> int:
        return self.lease.max_attempts

    @property
    def queue(self) -> str:
        return self.lease.queue

    @property
    def task(self) -> str:
        return self.lease.task

    @property
    def log(self) -> JobLog:
        """``ctx.log("text", **fields)``, or by level: ``ctx.log.warning(...)``,
        ``ctx.log.error("failed", exc=e)`` (the traceback is kept with the line)."""
        return JobLog(self)

    async def job(self) -> Job:
        """The job's record as the store holds it now (data, attempts, progress, logs
        written so far)."""
        job = await self.client.get_job(self.job_id)
        if job is None:  # purged or cancelled and removed while the handler still runs
            raise LookupError(f"job {self.job_id} is no longer in the store")
        return job

    def log_line(self, message: str, level: str, fields: Mapping[str, Any]) -> None:
        """``log`` with the fields as a mapping: any field name is fine, even ``message``
        or ``level`` (the runtimes pass on what a child sent)."""
        line: dict[str, Any] = {"at": time.time(), "level": level, "message": str(message)}
        if fields:
            line["fields"] = dict(fields)
        self._keep(line)
        log.debug("[%s %s] %s %s", self.task, self.job_id, message, fields or "")

    def keep(self, lines: Iterable[dict[str, Any]], dropped: int = 0) -> None:
        """Add log lines as they are (a child process's), and ``dropped`` lines it counted."""
        self._dropped += dropped
        for line in lines:
            self._keep(line)

    def _keep(self, line: dict[str, Any]) -> None:
        settings = self.client.settings
        max_lines, max_bytes = settings.max_log_lines, settings.max_log_bytes
        size = line_size(line)
        if self._logs is _NO_LINES:
            self._logs, self._sizes = deque(), deque()
        self._logs.append(line)
        self._sizes.append(size)
        self._lines += 1
        self._bytes += size
        while self._logs and (self._lines > max_lines or self._bytes > max_bytes):
            self._logs.popleft()
            self._bytes -= self._sizes.popleft()
            self._lines -= 1
            self._dropped += 1

    def _take(self) -> list[dict[str, Any]]:
        if not self._logs:
            return []
        logs = list(self._logs)
        self._logs.clear()
        self._sizes.clear()
        self._lines = self._bytes = 0
        return logs

    def take_dropped(self) -> int:
        """Lines dropped here since the last call: the store adds them to the job's count."""
        dropped, self._dropped = self._dropped, 0
        return dropped

    async def progress(self, value: Any) -> None:
        """Record progress (a number such as a percentage, or any JSON value), at most
        ``max_payload`` bytes as JSON: it is part of the job's record."""
        encode_payload(value, self.client.settings.max_payload, "progress")
        ok = await self.client.backend.update(self.lease, value, self._take(), self.take_dropped())
        if not ok:
            log.warning("job %s: progress not recorded, the lease is lost", self.job_id)
        if self.client.bus.wants("job.progress"):
            self.client.bus.emit(events.progress(self.lease, value))

    async def enqueue(
        self, task: str | Task[Any, Any], data: Any = None, **options: Any
    ) -> JobHandle[Any]:
        """Enqueue a follow-up job."""
        return await self.client.enqueue(task, data, **options)

    def unwritten(self) -> tuple[list[dict[str, Any]], int]:
        """The lines not yet written and how many were dropped, for the outcome (one call:
        every job's finish asks)."""
        dropped, self._dropped = self._dropped, 0
        if not self._logs:
            return [], dropped
        return self._take(), dropped

    def drain_logs(self) -> list[dict[str, Any]]:
        """The lines not yet written (``take_dropped`` says how many were dropped)."""
        return self._take()


class JobLog:
    """A job's log: callable as ``ctx.log(message, level, **fields)``, with one method
    per level."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    def __call__(self, message: str, level: str = "info", **fields: Any) -> None:
        self._ctx.log_line(message, level, fields)

    def debug(self, message: str, **fields: Any) -> None:
        self._ctx.log_line(message, "debug", fields)

    def info(self, message: str, **fields: Any) -> None:
        self._ctx.log_line(message, "info", fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._ctx.log_line(message, "warning", fields)

    def error(self, message: str, exc: BaseException | None = None, **fields: Any) -> None:
        """An error line; with ``exc``, its type, message and traceback go with it."""
        if exc is not None:
            fields["error"] = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc)),
            }
        self._ctx.log_line(message, "error", fields)
