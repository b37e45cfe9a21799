"""runtime="process": a warm pool of child processes, one job at a time in each.

The pool keeps ``size`` children ready (each has imported the app's process tasks once).
A job takes an idle child, sends it the payload, serves its context calls, and gives it
back. A timeout, a cancel or a shutdown kills that child (SIGTERM, SIGKILL after a short
grace) and a fresh one is started in its place; a child that dies on its own fails its
attempt with the exit reason, and the worker carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from workhorse.runtimes import child as child_main
from workhorse.runtimes import wire
from workhorse.runtimes.common import KILL_GRACE, RemoteError, died, serve_call

if TYPE_CHECKING:
    from workhorse.client import Client
    from workhorse.context import JobContext
    from workhorse.job import Lease
    from workhorse.task import Task

log = logging.getLogger("workhorse.worker")

_SPAWN = multiprocessing.get_context("spawn")
_START_TIMEOUT = 60.0  # seconds a new child may take to import the app
_IDLE_EXIT = 60.0  # seconds a child beyond the warm size may sit idle before it is retired


def task_spec(task: Task[Any, Any]) -> dict[str, Any]:
    """Where a child finds a task: its function's module, qualified name and file."""
    fn = task.fn
    code = getattr(fn, "__code__", None)
    return {
        "name": task.name,
        "module": getattr(fn, "__module__", None) or "__main__",
        "qualname": getattr(fn, "__qualname__", task.name),
        "file": code.co_filename if code is not None else None,
    }


class Child:
    __slots__ = ("idle_since", "pid", "proc", "reader", "writer")

    def __init__(
        self, proc: BaseProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proc = proc
        self.pid: int = proc.pid or 0
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def alive(self) -> bool:
        return not self.writer.is_closing() and self.proc.exitcode is None

    async def exit_code(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` for the child to exit; its exit code, None if it runs on."""
        deadline = time.monotonic() + timeout
        while self.proc.exitcode is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self.proc.exitcode

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    async def stop(self, grace: float = KILL_GRACE) -> None:
        """SIGTERM, then SIGKILL after ``grace``; returns once the child is gone."""
        self.writer.close()
        if self.proc.exitcode is None:
            self.signal(signal.SIGTERM)
            try:
                if await self.exit_code(grace) is None:
                    self.signal(signal.SIGKILL)
            except asyncio.CancelledError:
                self.kill_now()
                raise
        self.kill_now()

    def kill_now(self) -> None:
        """SIGKILL and reap, without awaiting: for when nothing may be left running."""
        self.writer.close()
        if self.proc.exitcode is None:
            self.signal(signal.SIGKILL)
        self.proc.join(5)
        if self.proc.exitcode is not None:
            self.proc.close()


class ProcessPool:
    def __init__(self, client: Client, size: int) -> None:
        self.client = client
        self.size = max(1, size)
        self._idle: list[Child] = []
        self._busy: set[Child] = set()
        self._spawning: list[asyncio.Task[Child]] = []  # started, not yet handed to a job
        self._closed = False
        self._bg: set[asyncio.Task[Any]] = set()

    @property
    def pids(self) -> list[int]:
        """Every live child (idle or busy), for monitoring and tests."""
        return [c.pid for c in (*self._idle, *self._busy)]

    def _preload(self) -> list[dict[str, Any]]:
        return [
            task_spec(t)
            for t in self.client.registry.tasks.values()
            if t.defaults.runtime == "process"
        ]

    # -- children ----------------------------------------------------------------------
    def warm(self) -> None:
        """Start children in the background until ``size`` exist or are starting."""
        missing = self.size - len(self._idle) - len(self._busy) - len(self._spawning)
        for _ in range(max(0, missing)):
            self._start_spawn()

    def _start_spawn(self) -> None:
        t = asyncio.ensure_future(self._spawn())
        self._spawning.append(t)
        t.add_done_callback(self._spawned)

    def _spawned(self, t: asyncio.Task[Child]) -> None:
        if t not in self._spawning:
            return  # a job took it over
        self._spawning.remove(t)
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            log.error("could not start a child process for runtime='process': %s", exc)
            return
        child = t.result()
        if self._closed:
            child.kill_now()
        else:
            self._idle.append(child)

    async def _spawn(self) -> Child:
        parent, theirs = socket.socketpair()
        proc = _SPAWN.Process(
            target=child_main.main,
            args=(theirs, os.getpid(), self._preload(), self.client.settings.max_payload),
            name="workhorse-child",
            daemon=True,  # reaped by multiprocessing at exit, should the pool not be closed
        )
        try:
            proc.start()
        finally:
            theirs.close()
        try:
            reader, writer = await asyncio.open_unix_connection(sock=parent)
        except BaseException:
            parent.close()
            proc.kill()
            proc.join(5)
            raise
        child = Child(proc, reader, writer)
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                msg, _ = await wire.read(reader)
        except BaseException as exc:
            child.kill_now()
            if isinstance(exc, asyncio.IncompleteReadError):
                raise RuntimeError(
                    f"a child process {_exit_text(child)} while starting; see the worker's "
                    "stderr for its traceback"
                ) from None
            raise
        if msg.get("t") != "ready":
            child.kill_now()
            raise RuntimeError(f"a child process sent {msg!r} instead of 'ready'")
        return child

    async def _acquire(self) -> Child:
        while self._idle:
            child = self._idle.pop()
            if child.alive():
                return child
            child.kill_now()
        if self._spawning:
            t = self._spawning.pop(0)  # one already on its way: take it over
            try:
                child = await t
            except asyncio.CancelledError:
                _kill_spawned(t)  # it may have started as this job was cancelled
                raise
        else:
            child = await self._spawn()
        return child

    def _release(self, child: Child, healthy: bool) -> None:
        self._busy.discard(child)
        if not healthy or self._closed or not child.alive():
            self._retire(child)
            self.warm()
            return
        now = time.monotonic()
        child.idle_since = now
        self._idle.append(child)
        if len(self._idle) > self.size:
            # Children beyond the warm size (a burst) leave once they have sat idle a while.
            for old in [c for c in self._idle if now - c.idle_since > _IDLE_EXIT]:
                if len(self._idle) <= self.size:
                    break
                self._idle.remove(old)
                self._retire(old)

    def _retire(self, child: Child) -> None:
        t = asyncio.ensure_future(child.stop())
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    # -- jobs --------------------------------------------------------------------------
    async def run(
        self,
        task: Task[Any, Any],
        lease: Lease,
        ctx: JobContext,
        started: Callable[[], None] | None = None,
    ) -> bytes:
        """Run one attempt in a child; the result's bytes, or RemoteError. ``started`` is
        called once a child is ready to take the job."""
        if self._closed:
            raise RuntimeError("the process pool is closed: the worker is stopping")
        child = await self._acquire()
        if started is not None:
            started()
        self._busy.add(child)
        self.warm()  # keep the warm size while this one works
        healthy = False
        try:
            header = task_spec(task)
            header.update(
                t="run",
                job_id=lease.job_id,
                queue=lease.queue,
                attempt=lease.attempts,
                max_attempts=lease.max_attempts,
                memory_limit=task.defaults.memory_limit,
            )
            if ctx.flow is not None:  # a flow step: the child serves ctx.flow and ctx.state
                header["flow"] = {
                    "run_id": ctx.flow.run_id,
                    "flow": ctx.flow.flow,
                    "step": ctx.flow.step,
                }
            child.writer.write(wire.frame(header, lease.data))
            while True:
                try:
                    msg, raw = await wire.read(child.reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    code = await child.exit_code(2.0)
                    raise died(f"the child process {child.pid}", code) from None
                kind = msg.get("t")
                _keep_logs(ctx, msg)
                if kind == "done":
                    healthy = True
                    return raw if raw is not None else b"null"
                if kind == "error":
                    healthy = not msg.get("recycle")
                    raise RemoteError(msg["error"])
                if kind == "call":
                    try:
                        value = await serve_call(ctx, msg["method"], msg.get("params") or {})
                        reply: dict[str, Any] = {"t": "reply", "value": value}
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        reply = {"t": "reply", "error": f"{type(exc).__name__}: {exc}"}
                    child.writer.write(wire.frame(reply))
        except asyncio.CancelledError:
            # A timeout, a cancel or a shutdown: the code in the child cannot be
            # interrupted any other way. Wait for it to be gone before the job's outcome.
            self._busy.discard(child)
            try:
                await child.stop()
            finally:
                if not self._closed:
                    self.warm()
            raise
        finally:
            if child in self._busy:
                self._release(child, healthy)

    # -- shutdown ----------------------------------------------------------------------
    def close_now(self) -> None:
        """Kill every child and reap it, without awaiting (the worker is stopping)."""
        self._closed = True
        for t in self._spawning:
            t.cancel()
            _kill_spawned(t)
        self._spawning.clear()
        for child in (*self._idle, *self._busy):
            child.kill_now()
        self._idle.clear()
        self._busy.clear()

    async def close(self) -> None:
        self._closed = True
        spawning, self._spawning = self._spawning, []
        for t in spawning:
            t.cancel()
        started = await asyncio.gather(*spawning, return_exceptions=True)
        children: Iterable[Child] = (
            *self._idle,
            *self._busy,
            *(c for c in started if isinstance(c, Child)),
        )  # a child that was ready before its cancel came was not handed to the pool
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(c.stop() for c in children), *self._bg, return_exceptions=True)


def _kill_spawned(t: asyncio.Task[Child]) -> None:
    if t.done() and not t.cancelled() and t.exception() is None:
        t.result().kill_now()


def _keep_logs(ctx: JobContext, msg: dict[str, Any]) -> None:
    # Lines the child kept travel with its next message, with how many it dropped.
    logs, dropped = msg.get("logs") or (), int(msg.get("dropped") or 0)
    if logs or dropped:
        ctx.keep(logs, dropped)


def _exit_text(child: Child) -> str:
    from workhorse.runtimes.common import describe_exit

    return describe_exit(child.proc.exitcode)
