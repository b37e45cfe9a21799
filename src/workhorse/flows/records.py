"""A run's record in the store, and the views of a run that the facade returns."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from workhorse import codec
from workhorse.backends import Backend
from workhorse.errors import WorkhorseError
from workhorse.flows import keys
from workhorse.job import Job

RunState = Literal["running", "completed", "failed", "cancelled"]
RUN_STATES = ("running", "completed", "failed", "cancelled")
# How long a generation's hold outlives a caller that died holding it.
HOLD_TTL = 60.0


class FlowFailed(WorkhorseError):
    """A run ended failed or cancelled; ``run`` is its final view."""

    def __init__(self, run: RunInfo) -> None:
        super().__init__(f"flow run {run.id} of {run.flow!r} ended {run.state}: {run.error}")
        self.run = run


@dataclass(slots=True)
class RunRecord:
    id: str
    flow: str
    input: Any
    created_at: float
    state: RunState = "running"
    gen: int = 0  # a restart starts a new generation: new step job ids
    ended_at: float | None = None
    error: dict[str, Any] | None = None
    stalled_at: float | None = None  # when the sweep found it without progress
    parent: str | None = None  # the run whose step started it (``ctx.flow.start``)

    def dumps(self) -> str:
        d = asdict(self)
        if d["parent"] is None:  # a run no step started reads as before
            del d["parent"]
        return codec.dumps(d).decode()

    @classmethod
    def loads(cls, raw: str) -> RunRecord:
        d = codec.loads(raw)
        # Fields a later version added are left out, so a record it wrote still loads.
        return cls(**{k: v for k, v in d.items() if k in _FIELDS})


_FIELDS = frozenset(RunRecord.__dataclass_fields__)


def end_mark(
    state: RunState, at: float, error: dict[str, Any] | None, due: float | None = None
) -> str:
    """The value of a run generation's end marker: how it ended, and when retention
    removes it (``due``; absent: kept until ``app.flows.clear``)."""
    mark: dict[str, Any] = {"state": state, "at": at, "error": error}
    if due is not None:
        mark["due"] = due
    return codec.dumps(mark).decode()


def due_of(mark: str | None) -> float | None:
    """When retention removes the run generation that ended with ``mark``, if it does."""
    try:
        d = codec.loads(mark) if mark is not None else None
    except ValueError:  # a marker written before it held the end
        return None
    due = d.get("due") if isinstance(d, dict) else None
    return float(due) if isinstance(due, int | float) else None


def ended(rec: RunRecord, mark: str | None) -> RunRecord:
    """The record with its generation's end laid over it (the end marker's value)."""
    if mark is not None and rec.state == "running":
        try:
            d = codec.loads(mark)
        except ValueError:  # a marker written before it held the end: the state alone
            d = {"state": mark}
        if isinstance(d, dict) and d.get("state") in RUN_STATES:
            rec.state = d["state"]
            rec.ended_at = d.get("at")
            rec.error = d.get("error")
    return rec


async def load(backend: Backend, run: str) -> RunRecord | None:
    raw = await backend.kv_get(keys.run_key(run))
    if raw is None:
        return None
    rec = RunRecord.loads(raw)
    if rec.state != "running":
        return rec
    return ended(rec, await backend.kv_get(keys.end_key(run, rec.gen)))


async def load_many(backend: Backend, runs: list[str]) -> dict[str, RunRecord]:
    """``load`` of each run that exists, by id, in two round trips (records, then the
    running ones' end markers)."""
    found = await backend.kv_get_many([keys.run_key(r) for r in runs])
    recs = {rec.id: rec for rec in map(RunRecord.loads, found.values())}
    open_ = [keys.end_key(r.id, r.gen) for r in recs.values() if r.state == "running"]
    marks = await backend.kv_get_many(open_) if open_ else {}
    for r in recs.values():
        ended(r, marks.get(keys.end_key(r.id, r.gen)))
    return recs


def entry(rec: RunRecord) -> tuple[str, str]:
    """The kv key and value the run's record is kept under."""
    return keys.run_key(rec.id), rec.dumps()


async def hold(backend: Backend, run: str, gen: int) -> str | None:
    """Take the hold that a restart, a resume and a retention removal of the run's
    generation ``gen`` each keep while they change it (``keys.restart_key``), so that no
    two of them interleave: its token, or None when another call holds it."""
    token = os.urandom(8).hex()
    taken = await backend.set_if_absent(keys.restart_key(run, gen), token, HOLD_TTL)
    return token if taken else None


async def release(backend: Backend, run: str, gen: int, token: str) -> None:
    """Let go of a hold ``hold`` gave."""
    await backend.kv_delete(keys.restart_key(run, gen), token)


async def save(backend: Backend, rec: RunRecord) -> None:
    await backend.kv_set(*entry(rec))


@dataclass(slots=True)
class StepInfo:
    step: str
    job_id: str
    state: str  # the job's state, or "missing" (its record was purged or is being written)
    input: Any = None
    output: Any = None
    attempts: int = 0
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(slots=True)
class RunInfo:
    id: str
    flow: str
    state: RunState
    input: Any
    created_at: float
    ended_at: float | None
    error: dict[str, Any] | None
    steps: list[StepInfo] = field(default_factory=list)
    stalled_at: float | None = None
    waits: list[dict[str, Any]] = field(default_factory=list)  # steps waiting, before or after
    parent: str | None = None  # the run whose step started it
    children: list[str] = field(default_factory=list)  # the runs its steps started

    @property
    def waiting(self) -> bool:
        """Running, with a step waiting (before it runs or before its completion fires)."""
        return self.state == "running" and bool(self.waits)

    def step(self, name: str) -> list[StepInfo]:
        return [s for s in self.steps if s.step == name]


def step_info(step: str, job_id: str, job: Job | None) -> StepInfo:
    if job is None:
        return StepInfo(step, job_id, "missing")
    return StepInfo(
        step,
        job_id,
        str(job.state),
        job.data,
        job.result,
        job.attempts,
        job.error,
        None if job.started_at is None else job.started_at.timestamp(),
        None if job.finished_at is None else job.finished_at.timestamp(),
    )
