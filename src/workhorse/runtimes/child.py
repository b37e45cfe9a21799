"""The main loop of a pooled child process (runtime="process").

A child is started with the "spawn" method (a fresh interpreter: the worker has threads and
an event loop, which fork would copy half-way). It imports each process task's module once,
then runs one job at a time: the worker sends ``run`` with the payload bytes, the child
answers ``done`` with the result bytes or ``error``. Context calls (progress, enqueue) go
to the worker as ``call`` frames and block until the ``reply``; log lines travel with the
next call or with the outcome, as they do inline.

A timeout or a cancel is not signalled to the handler: the worker kills the child (SIGTERM,
which raises here so ``finally`` blocks run, then SIGKILL after a short grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import importlib.util
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workhorse.client import Client, HasClient
from workhorse.context import JobContext
from workhorse.errors import error_info
from workhorse.job import Job, JobState, Lease
from workhorse.registry import Registry
from workhorse.runtimes.common import job_from_wire
from workhorse.runtimes.wire import BlockingChannel
from workhorse.settings import Settings
from workhorse.task import Task, TaskOptions

if TYPE_CHECKING:
    from workhorse.task import JobHandle

_PR_SET_PDEATHSIG = 1


class _Terminate(BaseException):
    """SIGTERM from the worker: leave the job (running ``finally`` blocks) and exit."""


class ChildContext(JobContext):
    """The JobContext a handler sees in a child: the same methods, served by the worker."""

    __slots__ = ("_chan",)

    def __init__(self, client: Client | HasClient, lease: Lease, chan: BlockingChannel) -> None:
        super().__init__(client, lease)
        self._chan = chan

    def call(self, method: str, params: dict[str, Any]) -> Any:
        # Blocking on purpose: the child runs one job, and the reply comes straight back.
        self._chan.send(
            {"t": "call", "method": method, "params": params, "logs": self.drain_logs()}
        )
        got = self._chan.recv()
        if got is None:
            raise _Terminate()
        reply, _ = got
        if "error" in reply:
            raise RuntimeError(f"context call {method!r} failed in the worker: {reply['error']}")
        return reply.get("value")

    async def progress(self, value: Any) -> None:
        self.call("progress", {"value": value})

    async def job(self) -> Job:
        return job_from_wire(self.call("job", {}))

    async def enqueue(
        self, task: str | Task[Any, Any], data: Any = None, **options: Any
    ) -> JobHandle[Any]:
        """Enqueue a follow-up job through the worker. The handle carries the id and
        status; waiting on it from inside a child is not supported."""
        from pydantic import BaseModel

        from workhorse.task import JobHandle

        name = task.name if isinstance(task, Task) else str(task)
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json")
        at = options.get("at")
        if at is not None and hasattr(at, "timestamp"):
            options["at"] = at.timestamp()  # JSON cannot carry a datetime
        for key in ("delay", "timeout", "lease"):
            if hasattr(options.get(key), "total_seconds"):
                options[key] = options[key].total_seconds()
        got = self.call("enqueue", {"task": name, "data": data, "options": options})
        return JobHandle(self.client, got["id"], name, "", got["status"], JobState(got["state"]))


class ChildFlow:
    """``ctx.flow`` in a child: the step's ids, and emit, start and cancel served by the
    worker."""

    def __init__(self, ctx: ChildContext, info: dict[str, Any]) -> None:
        self._ctx = ctx
        self.run_id: str = info["run_id"]
        self.flow: str = info["flow"]
        self.step: str = info["step"]

    async def emit(self, trigger: str, data: Any = None) -> None:
        self._ctx.call("flow.emit", {"trigger": trigger, "data": data})

    async def start(self, flow: str, data: Any = None) -> str:
        return str(self._ctx.call("flow.start", {"flow": flow, "data": data}))

    async def cancel(self) -> None:
        self._ctx.call("flow.cancel", {})


class ChildState:
    """``ctx.state`` in a child, served by the worker."""

    def __init__(self, ctx: ChildContext) -> None:
        self._ctx = ctx

    async def get(self, name: str, default: Any = None, *, scope: str = "run") -> Any:
        got = self._ctx.call("flow.state.get", {"key": name, "scope": scope})
        return got["value"] if got["found"] else default

    async def set(
        self, name: str, value: Any, *, ttl: float | None = None, scope: str = "run"
    ) -> None:
        self._ctx.call("flow.state.set", {"key": name, "value": value, "ttl": ttl, "scope": scope})

    async def delete(self, name: str, *, scope: str = "run") -> bool:
        return bool(self._ctx.call("flow.state.delete", {"key": name, "scope": scope}))


def _guard(parent_pid: int) -> None:
    """Die with the worker: a child must never outlive it, even after a SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the closed socket still ends idle children
        pass
    if os.getppid() != parent_pid:
        os._exit(0)  # the worker died before the guard was set
    # Ctrl-C reaches the whole process group; the worker decides what stops, not the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    # A crashing job must not fill the disk with core files.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _on_term(signum: int, frame: Any) -> None:
    raise _Terminate()


def _resolve(spec: dict[str, Any]) -> Callable[..., Any]:
    """Find the task's function: import its module and follow its qualified name. Tasks
    are found by where their code lives, never by a name taken from a payload."""
    module_name, qualname = spec["module"], spec["qualname"]
    if "<locals>" in qualname:
        raise LookupError(
            f"task {spec['name']!r} is defined inside a function ({qualname}); a child "
            "process can only find tasks defined at module level"
        )
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            # Discovered from a folder: the module's name cannot be imported, its file can.
            path = spec.get("file")
            loc = importlib.util.spec_from_file_location(module_name, path) if path else None
            if loc is None or loc.loader is None:
                raise
            module = importlib.util.module_from_spec(loc)
            sys.modules[module_name] = module
            loc.loader.exec_module(module)
    obj: Any = module
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        obj = _from_apps(module, spec["name"])
    if isinstance(obj, Task):
        obj = obj.fn
    if not callable(obj):
        raise LookupError(f"{module_name}.{qualname} is not callable")
    return obj  # type: ignore[no-any-return]


def _from_apps(module: Any, name: str) -> Any:
    # Whatever object the module holds with a registry (the app) names the task: the child
    # reads the registry, so it never imports the app's class.
    for value in vars(module).values():
        registry = getattr(value, "registry", None)
        if isinstance(registry, Registry) and name in registry.tasks:
            return registry.tasks[name].fn
    raise LookupError(f"no task {name!r} in module {module.__name__}")


class _Child:
    def __init__(self, chan: BlockingChannel, max_payload: int) -> None:
        self.chan = chan
        # Only for decoding, encoding and handles: this client never opens a backend.
        settings = Settings.load(url="memory://", max_payload=max_payload)
        self.client = Client(Registry(), lambda: settings)
        self.tasks: dict[tuple[str, str, str], Task[Any, Any] | BaseException] = {}
        self.loop = asyncio.new_event_loop()
        self.soft, self.hard = resource.getrlimit(resource.RLIMIT_AS)

    def load(self, spec: dict[str, Any]) -> Task[Any, Any]:
        key = (spec["name"], spec["module"], spec["qualname"])
        found = self.tasks.get(key)
        if found is None:
            try:
                found = Task(self.client, spec["name"], _resolve(spec), TaskOptions())
            except Exception as exc:
                found = exc
            self.tasks[key] = found
        if isinstance(found, BaseException):
            raise found
        return found

    def run(self, msg: dict[str, Any], raw: bytes) -> None:
        ctx: ChildContext | None = None
        limit = msg.get("memory_limit")
        try:
            task = self.load(msg)
            lease = Lease(
                msg["job_id"],
                "",
                task.name,
                msg["queue"],
                raw,
                msg["attempt"],
                msg["max_attempts"],
                None,
                0.0,
                0.0,
            )
            ctx = ChildContext(self.client, lease, self.chan)
            if msg.get("flow"):
                ctx.flow = ChildFlow(ctx, msg["flow"])
                ctx.state = ChildState(ctx)
            args = task.args(task.decode(raw), ctx)
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (min(limit, self._cap()), self.hard))
            try:
                if task.is_async:
                    result = self.loop.run_until_complete(task.fn(*args))
                else:
                    result = task.fn(*args)
            finally:
                if limit:
                    resource.setrlimit(resource.RLIMIT_AS, (self.soft, self.hard))
            out = task.encode_result(result)
        except (Exception, SystemExit) as exc:
            logs = ctx.drain_logs() if ctx is not None else []
            recycle = isinstance(exc, MemoryError)
            self.chan.send(
                {"t": "error", "error": error_info(exc), "logs": logs, "recycle": recycle}
            )
            if recycle:  # a heap that ran out may be left in pieces: start afresh
                sys.exit(0)
            return
        self.chan.send({"t": "done", "logs": ctx.drain_logs()}, out)

    def _cap(self) -> int:
        return self.hard if self.hard != resource.RLIM_INFINITY else 1 << 62


def main(
    sock: socket.socket, parent_pid: int, preload: list[dict[str, Any]], max_payload: int
) -> None:
    """The target of the spawned process."""
    try:
        _guard(parent_pid)
        chan = BlockingChannel(sock)
        child = _Child(chan, max_payload)
        for spec in preload:  # import the app's process tasks once, before the first job
            with contextlib.suppress(Exception):  # reported to the job that needs it
                child.load(spec)
        chan.send({"t": "ready", "pid": os.getpid()})
        while True:
            got = chan.recv()
            if got is None:
                return  # the worker closed its end: it stopped, or retired this child
            msg, raw = got
            if msg.get("t") == "run":
                child.run(msg, raw or b"null")
    except (_Terminate, BrokenPipeError, ConnectionResetError):
        os._exit(0)
