"""What the process and command runtimes share: how a remote failure is carried back, how
a child's exit is told, how a child is killed, and the context calls it may make."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from workhorse.job import Event, Job, JobState, to_datetime

if TYPE_CHECKING:
    from workhorse.context import JobContext

KILL_GRACE = 0.5  # seconds between SIGTERM and SIGKILL for a child being stopped
STATE_TTL = 7 * 86_400.0  # a job's state (command runtime) outlives its retries by a week


class RemoteError(Exception):
    """A failure that happened outside the worker: the handler raised in a child process,
    a command reported an error, or the child died. ``info`` is the stored error
    (type, message, traceback), kept as the child reported it."""

    def __init__(self, info: dict[str, Any], *, retry: bool = True) -> None:
        super().__init__(info.get("message", ""))
        self.info = info
        self.retry = retry


def died(what: str, code: int | None, tail: str = "") -> RemoteError:
    message = f"{what} {describe_exit(code)} before it returned a result"
    if tail:
        message += f"; its last output:\n{tail}"
    return RemoteError({"type": "ChildDied", "message": message, "traceback": ""})


def describe_exit(code: int | None) -> str:
    """``-11`` → ``died of SIGSEGV``; ``3`` → ``exited with code 3``."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed from outside, or out of memory)" if -code == signal.SIGKILL else ""
        return f"died of {name}{hint}"
    return f"exited with code {code}"


def signal_group(pid: int, sig: int) -> None:
    """Signal a child started in its own session, and whatever it started in turn."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def job_to_wire(job: Job) -> dict[str, Any]:
    """A job's record as JSON values (datetimes as epoch seconds), for a child process."""
    out = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    for name, value in out.items():
        if isinstance(value, datetime):
            out[name] = value.timestamp()
    return out


def job_from_wire(raw: dict[str, Any]) -> Job:
    fields = {f.name: f for f in dataclasses.fields(Job)}
    values = {k: v for k, v in raw.items() if k in fields}
    for name in ("created_at", "run_at", "started_at", "finished_at", "lease_expires_at"):
        values[name] = to_datetime(values.get(name))
    values["state"] = JobState(values["state"])
    return Job(**values)


def state_key(job_id: str, name: str) -> str:
    return f"state:{job_id}:{name}"


async def serve_call(ctx: JobContext, method: str, params: dict[str, Any]) -> Any:
    """Run one context call a child asked for. Raises on a bad call; the caller turns the
    error into a reply, so a child's mistake never fails the worker."""
    client = ctx.client
    if method == "progress":
        await ctx.progress(params.get("value"))
        return None
    if method == "log":
        fields = params.get("fields") or {}
        ctx.log_line(
            str(params.get("message", "")),
            str(params.get("level", "info")),
            fields if isinstance(fields, dict) else {},
        )
        return None
    if method == "job":
        return job_to_wire(await ctx.job())
    if method == "enqueue":
        handle = await ctx.enqueue(
            str(params["task"]), params.get("data"), **(params.get("options") or {})
        )
        return {"id": handle.id, "status": handle.status, "state": str(handle.state)}
    if method == "state.get":
        raw = await client.backend.kv_get(state_key(ctx.job_id, _key(params)))
        return None if raw is None else orjson.loads(raw)
    if method == "state.set":
        value = orjson.dumps(params.get("value")).decode()
        await client.backend.kv_set(state_key(ctx.job_id, _key(params)), value, STATE_TTL)
        return None
    if method == "emit":
        name = params.get("event")
        if not isinstance(name, str) or not name:
            raise ValueError("emit needs an event name, e.g. {'event': 'user.created'}")
        data = params.get("data")
        event = Event(
            name,
            ctx.job_id,
            ctx.task,
            ctx.queue,
            data if isinstance(data, dict) else {"value": data},
            time.time(),
        )
        await client.backend.publish([event])
        if client.bus.wants(name):
            client.bus.emit(event)
        return None
    if method.startswith("flow."):
        return await _flow_call(ctx, method, params)
    raise ValueError(
        f"unknown context call {method!r}; known: log, progress, state.get, state.set, "
        "emit, enqueue, " + ", ".join(FLOW_CALLS)
    )


FLOW_CALLS = (
    "flow.emit",
    "flow.start",
    "flow.cancel",
    "flow.state.get",
    "flow.state.set",
    "flow.state.delete",
)


async def _flow_call(ctx: JobContext, method: str, params: dict[str, Any]) -> Any:
    """A flow step's ``ctx.flow`` and ``ctx.state`` calls, served by the worker's own."""
    if ctx.flow is None or ctx.state is None:
        raise ValueError(f"{method}: this job is no step of a flow run")
    scope = params.get("scope", "run")
    if method == "flow.emit":
        await ctx.flow.emit(str(params.get("trigger")), params.get("data"))
        return None
    if method == "flow.start":
        return await ctx.flow.start(str(params.get("flow")), params.get("data"))
    if method == "flow.cancel":
        await ctx.flow.cancel()
        return None
    if method == "flow.state.get":
        missing = object()
        value = await ctx.state.get(_key(params), missing, scope=scope)
        return {"found": False} if value is missing else {"found": True, "value": value}
    if method == "flow.state.set":
        await ctx.state.set(_key(params), params.get("value"), ttl=params.get("ttl"), scope=scope)
        return None
    if method == "flow.state.delete":
        return await ctx.state.delete(_key(params), scope=scope)
    raise ValueError(f"unknown flow call {method!r}; known: {', '.join(FLOW_CALLS)}")


def _key(params: dict[str, Any]) -> str:
    key = params.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError("state calls need a non-empty string 'key'")
    return key


async def wait_quietly(fut: asyncio.Future[Any] | asyncio.Task[Any], timeout: float) -> bool:
    """Wait for ``fut`` up to ``timeout`` without raising; True if it finished."""
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except (TimeoutError, Exception):
        return fut.done()
    return True
