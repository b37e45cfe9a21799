"""A tiny helper for workhorse jobs written in Python, run with runtime="command".

    # report.py
    from workhorse_job import run

    def handler(job, ctx):
        ctx.log("building report", user=job["data"]["user"])
        ctx.progress(50)
        seen = ctx.state.get("seen") or 0
        ctx.state.set("seen", seen + 1)
        ctx.emit("report.built", {"user": job["data"]["user"]})
        ctx.enqueue("send_email", {"to": "a@b.c"})
        return {"ok": True}

    if __name__ == "__main__":
        run(handler)

It speaks the protocol of docs/runtimes.md over stdin/stdout, with only the standard
library (copy this file next to your job). ``print`` still works: stdout lines that are
not protocol messages go into the job's log, as do stderr lines. Raise to fail the
attempt (it is retried as the task's ``retries`` allow); raise ``Fatal`` to fail it for good.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["Context", "Fatal", "run"]

_out = sys.stdout  # the protocol channel; print() is redirected to stderr below


class Fatal(Exception):
    """Fail the job without retrying it."""


class CallError(Exception):
    """The worker refused a context call (e.g. an unknown task for enqueue)."""


def _send(message: dict[str, Any]) -> None:
    _out.write(json.dumps(message, separators=(",", ":")) + "\n")
    _out.flush()


class _State:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def get(self, key: str) -> Any:
        """The value stored under ``key`` for this job (kept across its retries), or None."""
        return self._ctx._call("state.get", {"key": key})

    def set(self, key: str, value: Any) -> None:
        self._ctx._call("state.set", {"key": key, "value": value})


class _FlowState:
    """A flow step's state: kept per run (``scope="global"``: shared by all runs)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def get(self, key: str, default: Any = None, scope: str = "run") -> Any:
        got = self._ctx._call("flow.state.get", {"key": key, "scope": scope})
        return got["value"] if got["found"] else default

    def set(self, key: str, value: Any, ttl: float | None = None, scope: str = "run") -> None:
        self._ctx._call("flow.state.set", {"key": key, "value": value, "ttl": ttl, "scope": scope})

    def delete(self, key: str, scope: str = "run") -> bool:
        return bool(self._ctx._call("flow.state.delete", {"key": key, "scope": scope}))


class _Flow:
    """``ctx.flow`` of a flow step: its run, flow and step, and emit / start / cancel."""

    def __init__(self, ctx: Context, info: dict[str, Any]) -> None:
        self._ctx = ctx
        self.run_id: str = info["run_id"]
        self.flow: str = info["flow"]
        self.step: str = info["step"]

    def emit(self, trigger: str, data: Any = None) -> None:
        self._ctx._call("flow.emit", {"trigger": trigger, "data": data})

    def start(self, flow: str, data: Any = None) -> str:
        return str(self._ctx._call("flow.start", {"flow": flow, "data": data}))

    def cancel(self) -> None:
        self._ctx._call("flow.cancel", {})


class Context:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.id: str = job["id"]
        self.attempt: int = job["attempt"]
        # A flow step's state is its run's; another job's is kept per job.
        self.flow = _Flow(self, job["flow"]) if job.get("flow") else None
        self.state: _State | _FlowState = _FlowState(self) if self.flow else _State(self)
        self._next = 0

    def log(self, message: str, level: str = "info", **fields: Any) -> None:
        line: dict[str, Any] = {"type": "log", "message": str(message), "level": level}
        if fields:
            line["fields"] = fields
        _send(line)

    def progress(self, value: Any) -> None:
        self._call("progress", {"value": value})

    def emit(self, event: str, data: Any = None) -> None:
        self._call("emit", {"event": event, "data": data})

    def enqueue(self, task: str, data: Any = None, **options: Any) -> dict[str, Any]:
        """Enqueue a job of a task the worker knows; returns {"id", "status", "state"}."""
        return self._call("enqueue", {"task": task, "data": data, "options": options})

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        self._next += 1
        call_id = self._next
        _send({"type": "call", "id": call_id, "method": method, "params": params})
        while True:
            message = _read()
            if message is None:
                sys.exit(0)  # the worker went away
            if message.get("type") == "reply" and message.get("id") == call_id:
                if "error" in message:
                    raise CallError(message["error"])
                return message.get("value")


def _read() -> dict[str, Any] | None:
    line = sys.stdin.readline()
    if not line:
        return None
    return json.loads(line)  # type: ignore[no-any-return]


def run(handler: Callable[[dict[str, Any], Context], Any]) -> None:
    """Serve jobs until stdin closes: one ``handler(job, ctx)`` call per job."""
    sys.stdout = sys.stderr  # a stray print must not break the protocol
    _send({"type": "hello", "protocol": 1, "reuse": True})
    while True:
        job = _read()
        if job is None:
            return
        if job.get("type") != "job":
            continue
        try:
            result = handler(job, Context(job))
        except Exception as exc:
            error = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(),
            }
            _send({"type": "error", "error": error, "retry": not isinstance(exc, Fatal)})
        else:
            _send({"type": "result", "value": result})
