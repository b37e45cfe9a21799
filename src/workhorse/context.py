"""What a running task sees of its job: ids, attempt, log lines, progress, follow-ups."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workhorse.job import Event, Lease

if TYPE_CHECKING:
    from workhorse.app import Workhorse
    from workhorse.task import JobHandle, Task

log = logging.getLogger("workhorse.job")


class JobContext:
    """Passed to a task that asks for it (a parameter annotated ``JobContext`` or named
    ``ctx``). Log lines are kept with the job and written with its next progress update or
    its outcome, so logging costs no round trip."""

    __slots__ = ("_logs", "app", "cancelled", "lease")

    def __init__(self, app: Workhorse, lease: Lease) -> None:
        self.app = app
        self.lease = lease
        self.cancelled = False
        self._logs: list[dict[str, Any]] = []

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

    def log(self, message: str, level: str = "info", **fields: Any) -> None:
        self.log_line(message, level, fields)

    def log_line(self, message: str, level: str, fields: Mapping[str, Any]) -> None:
        """``log`` with the fields as a mapping: any field name is fine, even ``message``
        or ``level`` (the runtimes pass on what a child sent)."""
        line: dict[str, Any] = {"at": time.time(), "level": level, "message": str(message)}
        if fields:
            line["fields"] = dict(fields)
        self._logs.append(line)
        log.debug("[%s %s] %s %s", self.task, self.job_id, message, fields or "")

    async def progress(self, value: Any) -> None:
        """Record progress (a number such as a percentage, or any JSON value)."""
        logs, self._logs = self._logs, []
        ok = await self.app.backend.update(self.lease, value, logs)
        if not ok:
            log.warning("job %s: progress not recorded, the lease is lost", self.job_id)
        if self.app.bus.wants("job.progress"):
            self.app.bus.emit(
                Event(
                    "job.progress",
                    self.job_id,
                    self.task,
                    self.queue,
                    {"progress": value},
                    time.time(),
                )
            )

    async def enqueue(
        self, task: str | Task[Any, Any], data: Any = None, **options: Any
    ) -> JobHandle[Any]:
        """Enqueue a follow-up job."""
        return await self.app.enqueue(task, data, **options)

    def drain_logs(self) -> list[dict[str, Any]]:
        logs, self._logs = self._logs, []
        return logs
