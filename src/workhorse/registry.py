"""The registry: the tasks an app defines and the schedules they declare."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workhorse.errors import ConfigError, UnknownTaskError
from workhorse.schedules import Schedule
from workhorse.task import TASK_OPTIONS, Producer, Task, make_options


class Registry:
    """Tasks by name. ``producer`` (the client, once one is built on this registry) is
    what the tasks submit through: ``task.enqueue``, ``task.run``."""

    def __init__(self, producer: Producer | None = None) -> None:
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.producer = producer

    def _producer(self, task_name: str) -> Producer:
        if self.producer is None:
            raise ConfigError(f"task {task_name!r}: this registry has no client to submit through")
        return self.producer

    def add_task(
        self, fn: Callable[..., Any], *, name: str | None = None, **options: Any
    ) -> Task[Any, Any]:
        """Register ``fn`` under ``name`` (else its own name) with the task ``options``."""
        task_name = name or fn.__name__
        try:
            opts = make_options(**options)
        except TypeError:
            unknown = sorted(set(options) - set(TASK_OPTIONS))
            raise ConfigError(
                f"unknown task option(s) {unknown} for {task_name!r}; valid: "
                f"{', '.join(TASK_OPTIONS)}"
            ) from None
        if task_name in self.tasks and self.tasks[task_name].fn is not fn:
            raise ConfigError(
                f"task {task_name!r} is already registered by "
                f"{self.tasks[task_name].fn!r}; give one a name="
            )
        if opts.runtime == "process" and "<locals>" in getattr(fn, "__qualname__", ""):
            raise ConfigError(
                f"task {task_name!r} uses runtime='process', so a child process must import "
                "it: define it at module level, not inside a function"
            )
        task: Task[Any, Any] = Task(self._producer(task_name), task_name, fn, opts)
        self.tasks[task_name] = task
        return task

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTaskError(name, self.tasks) from None

    def resolve(self, task: str | Task[Any, Any]) -> Task[Any, Any]:
        """The task itself, or the registered one of that name."""
        if isinstance(task, Task):
            return task
        return self.get_task(task)

    def declared_schedules(self) -> dict[str, Schedule]:
        """Schedules declared in code: each task with ``cron=``, under the task's name."""
        return {
            name: Schedule(name, name, t.defaults.cron, "code")
            for name, t in self.tasks.items()
            if t.defaults.cron is not None
        }
