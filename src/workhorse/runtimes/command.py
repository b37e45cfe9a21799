"""runtime="command": any executable speaking newline-delimited JSON over stdin/stdout.

The protocol is defined in docs/runtimes.md. In short, the worker writes one ``job`` line;
the program writes ``log`` lines, ``call`` lines (answered by a ``reply`` line) and ends
with one ``result`` or ``error`` line. Lines on stderr, and stdout lines that are not
JSON, go into the job's log. A program that writes ``{"type": "hello", "reuse": true}``
keeps reading jobs after its result and is kept warm for the next job of the same
command; any other program runs one job and gets end-of-file on stdin.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import orjson

from workhorse.runtimes.common import KILL_GRACE, RemoteError, died, serve_call, signal_group
from workhorse.task import EnvSpec

if TYPE_CHECKING:
    from workhorse.client import Client
    from workhorse.context import JobContext
    from workhorse.job import Lease
    from workhorse.task import Task

log = logging.getLogger("workhorse.worker")

_TAIL = 20  # stderr lines kept to explain a program that died
_IDLE_EXIT = 60.0  # seconds a program beyond the warm size may sit idle before it is retired


# What a program needs to start and behave (its locale, time zone, temporary files), and no
# more: the worker's environment holds the store's URL and the app's other secrets.
BASE_ENV = frozenset(
    ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP")
)
BASE_ENV_WINDOWS = frozenset(("SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT"))
Kind = tuple[tuple[str, ...], EnvSpec]


def child_env(named: EnvSpec) -> dict[str, str]:
    """The minimal environment, plus what the task names (None: the worker's value)."""
    base = BASE_ENV | BASE_ENV_WINDOWS
    env = {k: v for k, v in os.environ.items() if k in base or k.startswith("LC_")}
    for name, value in named:
        if value is not None:
            env[name] = value
        elif name in os.environ:
            env[name] = os.environ[name]
    env["WORKHORSE_PROTOCOL"] = "1"
    return env


class Program:
    """One running program and the job it serves now (stderr lines go to that job)."""

    __slots__ = ("argv", "ctx", "idle_since", "kind", "proc", "reuse", "stderr_task", "tail")

    def __init__(self, kind: Kind, proc: asyncio.subprocess.Process) -> None:
        self.kind = kind  # programs are pooled per command and environment
        self.argv = kind[0]
        self.proc = proc
        self.reuse = False
        self.ctx: JobContext | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL)
        self.idle_since = time.monotonic()
        self.stderr_task = asyncio.ensure_future(self._stderr())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def _stderr(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # an over-long line: skip it, keep reading
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            self.tail.append(text)
            if self.ctx is not None:
                self.ctx.log(text, "warning", stream="stderr")
            else:
                log.warning("%s (pid %d, between jobs): %s", self.argv[0], self.pid, text)

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(orjson.dumps(message) + b"\n")

    async def stop(self, grace: float = KILL_GRACE) -> None:
        """SIGTERM to the program and what it started, SIGKILL after ``grace``."""
        if self.proc.returncode is None:
            signal_group(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                self.kill_now()
                raise
        self.kill_now()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stderr_task, 1)

    def kill_now(self) -> None:
        # The group too: a shell or a runner may have started the real program.
        signal_group(self.pid, signal.SIGKILL)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.stderr_task.cancel()


class CommandRunner:
    def __init__(self, client: Client, size: int) -> None:
        self.client = client
        self.size = max(1, size)  # idle programs kept per command
        self._idle: dict[Kind, list[Program]] = {}
        self._busy: set[Program] = set()
        self._bg: set[asyncio.Task[Any]] = set()
        self._closed = False
        # A result may be as large as max_payload; a line holds it, JSON-escaped.
        self._limit = max(1 << 16, self.client.settings.max_payload * 2 + (1 << 16))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in (*self._busy, *(p for ps in self._idle.values() for p in ps))]

    async def _start(self, kind: Kind) -> Program:
        argv, env = kind
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=self._limit,
                start_new_session=True,  # so a kill reaches what it starts
                env=child_env(env),
            )
        except OSError as exc:
            raise RemoteError(
                {
                    "type": "CommandNotFound",
                    "message": f"cannot start {list(argv)}: {exc}",
                    "traceback": "",
                },
                retry=False,
            ) from None
        return Program(kind, proc)

    async def _acquire(self, kind: Kind) -> Program:
        idle = self._idle.get(kind)
        while idle:
            program = idle.pop()
            if program.alive():
                return program
            self._retire(program)
        return await self._start(kind)

    def _release(self, program: Program, reusable: bool) -> None:
        self._busy.discard(program)
        program.ctx = None
        if not (reusable and program.reuse and program.alive()) or self._closed:
            self._retire(program, ended=not program.reuse)
            return
        idle = self._idle.setdefault(program.kind, [])
        now = time.monotonic()
        program.idle_since = now
        idle.append(program)
        if len(idle) > self.size:
            # Programs beyond the warm size (a burst) leave once they have sat idle a while.
            for old in [p for p in idle if now - p.idle_since > _IDLE_EXIT]:
                if len(idle) <= self.size:
                    break
                idle.remove(old)
                self._retire(old)

    def _retire(self, program: Program, ended: bool = False) -> None:
        t = asyncio.ensure_future(self._close_program(program, ended))
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    async def _close_program(self, program: Program, ended: bool) -> None:
        # End of input is the polite way to tell a program there are no more jobs.
        stdin = program.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(program.proc.wait(), 2.0 if ended else KILL_GRACE)
        await program.stop()

    async def run(self, task: Task[Any, Any], lease: Lease, ctx: JobContext) -> bytes:
        if self._closed:
            raise RuntimeError("the command runner is closed: the worker is stopping")
        argv = task.defaults.command
        assert argv is not None
        program = await self._acquire((argv, task.defaults.env))
        self._busy.add(program)
        program.ctx = ctx
        finished = False
        try:
            job = {
                "type": "job",
                "id": lease.job_id,
                "task": lease.task,
                "queue": lease.queue,
                "attempt": lease.attempts,
                "max_attempts": lease.max_attempts,
                "data": orjson.Fragment(lease.data),
            }
            if ctx.flow is not None:  # a flow step: the program may call flow.* too
                job["flow"] = {
                    "run_id": ctx.flow.run_id,
                    "flow": ctx.flow.flow,
                    "step": ctx.flow.step,
                }
            with contextlib.suppress(ConnectionError, RuntimeError):
                program.send(job)  # if it died already, the read below says how
            raw = await self._serve(program, ctx)
            finished = True
            return raw
        except asyncio.CancelledError:
            self._busy.discard(program)
            program.ctx = None
            await program.stop()
            raise
        finally:
            if program in self._busy:
                if not program.reuse:
                    # One job per run: its last stderr lines belong to this job.
                    await self._finish_output(program)
                else:
                    await asyncio.sleep(0)  # let stderr read what arrived with the result
                self._release(program, finished)

    async def _finish_output(self, program: Program) -> None:
        stdin = program.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(program.stderr_task), 1.0)

    async def _serve(self, program: Program, ctx: JobContext) -> bytes:
        stdout = program.proc.stdout
        assert stdout is not None
        while True:
            try:
                line = await stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                raise RemoteError(
                    {
                        "type": "ProtocolError",
                        "message": f"a stdout line over {self._limit:,} bytes; send large "
                        "results by reference",
                        "traceback": "",
                    }
                ) from None
            if not line:
                code = await _exit_code(program)
                await self._finish_output(program)
                raise died(f"command {list(program.argv)}", code, "\n".join(program.tail))
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                msg = None
            if not isinstance(msg, dict) or "type" not in msg:
                # A stray print: keep it, as the program's own output.
                ctx.log(line.decode(errors="replace").rstrip("\n"), "info", stream="stdout")
                continue
            kind = msg["type"]
            if kind == "result":
                value = msg.get("value")
                return orjson.dumps(value)
            if kind == "error":
                raise RemoteError(_error(msg.get("error")), retry=msg.get("retry", True))
            if kind == "log":
                fields = msg.get("fields")
                ctx.log_line(
                    str(msg.get("message", "")),
                    str(msg.get("level", "info")),
                    fields if isinstance(fields, dict) else {},
                )
            elif kind == "hello":
                program.reuse = bool(msg.get("reuse"))
            elif kind == "call":
                await self._call(program, ctx, msg)
            else:
                ctx.log(f"unknown message type {kind!r} ignored", "warning", stream="protocol")

    async def _call(self, program: Program, ctx: JobContext, msg: dict[str, Any]) -> None:
        call_id = msg.get("id")
        params = msg.get("params")
        try:
            value = await serve_call(
                ctx, str(msg.get("method")), params if isinstance(params, dict) else {}
            )
            reply: dict[str, Any] = {"type": "reply", "id": call_id, "value": value}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reply = {"type": "reply", "id": call_id, "error": f"{type(exc).__name__}: {exc}"}
        if call_id is not None:  # no id: a notification, nobody waits for the reply
            with contextlib.suppress(ConnectionError, RuntimeError):
                program.send(reply)

    def close_now(self) -> None:
        self._closed = True
        programs = [*self._busy, *(p for ps in self._idle.values() for p in ps)]
        self._busy.clear()
        self._idle.clear()
        for program in programs:
            program.kill_now()  # the loop's child watcher reaps it

    async def close(self) -> None:
        self._closed = True
        programs = [*self._busy, *(p for ps in self._idle.values() for p in ps)]
        self._busy.clear()
        self._idle.clear()
        await asyncio.gather(*(p.stop() for p in programs), *self._bg, return_exceptions=True)


async def _exit_code(program: Program) -> int | None:
    try:
        return await asyncio.wait_for(program.proc.wait(), 2.0)
    except TimeoutError:
        return None


def _error(info: Any) -> dict[str, Any]:
    if isinstance(info, dict):
        return {
            "type": str(info.get("type") or "Error"),
            "message": str(info.get("message", "")),
            "traceback": str(info.get("traceback") or info.get("stack") or ""),
        }
    return {"type": "Error", "message": str(info), "traceback": ""}
