"""The task catalog: every registered task with its queue, runtime, options and schedule
(``workhorse tasks APP``), as plain JSON values."""

from __future__ import annotations

from typing import Any

from workhorse.registry import Registry
from workhorse.task import Task, TaskOptions

_DEFAULTS = TaskOptions()
# Shown when they differ from the default (queue, runtime and cron have columns of their own).
_SHOWN = (
    "retries",
    "timeout",
    "priority",
    "max_stalls",
    "lease",
    "on_duplicate",
    "concurrency",
    "keep_for",
    "memory_limit",
)


def entry(task: Task[Any, Any]) -> dict[str, Any]:
    o = task.defaults
    options: dict[str, Any] = {
        name: getattr(o, name) for name in _SHOWN if getattr(o, name) != getattr(_DEFAULTS, name)
    }
    if o.singleton is not False:
        options["singleton"] = True if o.singleton is True else "per key"
    if o.rate is not None:
        options["rate"] = str(o.rate)
    if o.command is not None:
        options["command"] = list(o.command)
    doc = (task.__doc__ or "").strip().splitlines()
    return {
        "name": task.name,
        "queue": o.queue,
        "runtime": o.runtime,
        "options": options,
        "schedule": None
        if o.cron is None
        else {"cron": o.cron.pattern, "timezone": o.cron.timezone, "data": o.cron.data},
        "description": doc[0] if doc else "",
    }


def catalog(registry: Registry) -> list[dict[str, Any]]:
    return [entry(t) for _, t in sorted(registry.tasks.items())]
