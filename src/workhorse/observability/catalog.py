"""The task catalog: every registered task with its queue, runtime, options, schedule and
flow steps (``workhorse tasks APP``), as plain JSON values."""

from __future__ import annotations

from typing import Any

from workhorse.flows import Graph, Step
from workhorse.flows.waits import Wait
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


def step_entry(step: Step) -> dict[str, Any]:
    """A task's part in one flow: an entry step, or what it subscribes to; what it emits."""
    return {
        "flow": step.flow,
        "entry": step.entry,
        "subscribes": list(step.subscribes),
        "emits": list(step.emits),
        "wait": None if step.wait is None else wait_text(step.wait),
    }


def wait_text(wait: Wait) -> str:
    """What a step waits for before it runs: ``delay 60s``, ``cron 0 9 * * *``, ``signal
    approved``, ``webhook``."""
    if wait.webhook is not None:
        return "webhook"
    if wait.signal is not None:
        return f"signal {wait.signal}"
    if wait.cron is not None:
        return f"cron {wait.cron.pattern}"
    return f"delay {wait.delay:g}s"


def step_text(step: dict[str, Any]) -> str:
    """One line for a table: ``signup: entry -> emits paid``."""
    parts = ["entry" if step["entry"] else "on " + ", ".join(step["subscribes"])]
    if step["emits"]:
        parts.append("emits " + ", ".join(step["emits"]))
    if step["wait"]:
        parts.append(f"waits for {step['wait']}")
    return f"{step['flow']}: {'; '.join(parts)}"


def entry(task: Task[Any, Any], graph: Graph | None = None) -> dict[str, Any]:
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
        "flows": [step_entry(s) for s in (graph.tasks.get(task.name, []) if graph else [])],
        "description": doc[0] if doc else "",
    }


def catalog(registry: Registry, graph: Graph | None = None) -> list[dict[str, Any]]:
    """Every task; with ``graph`` (the app's flows), each task's steps."""
    return [entry(t, graph) for _, t in sorted(registry.tasks.items())]
