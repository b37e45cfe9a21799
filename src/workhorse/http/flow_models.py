"""What the flow routes answer with: the flows' graphs, runs, their steps and waits."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from workhorse.flows import FlowDef, RunInfo, RunRecord
from workhorse.flows.graph import STEP_PREFIX
from workhorse.flows.waits import WEBHOOK_SIGNAL, Wait


class WaitOut(BaseModel):
    kind: str  # delay | cron | signal | webhook
    delay: float | None = None
    cron: str | None = None
    signal: str | None = None
    key: str | None = None  # the input's field (a key function shows as "<function>")
    timeout: float | None = None
    on_timeout: str
    signed: bool | None = None  # a webhook wait: a Standard Webhooks signature is required


class StepDefOut(BaseModel):
    name: str
    entry: bool
    subscribes: list[str]
    emits: list[str]
    wait: WaitOut | None = None
    after: WaitOut | None = None  # the wait after it runs, before its completion fires
    triggers: list[str] = []  # an entry's external triggers: each starts a run


class EdgeOut(BaseModel):
    source: str  # a step of the flow
    target: str  # the step that runs when it finishes or emits the trigger
    trigger: str


class FlowOut(BaseModel):
    name: str
    steps: list[StepDefOut]
    edges: list[EdgeOut]
    entries: list[str]
    leaves: list[str]  # their outputs are the run's result
    on_failure: str
    cleanup: str


class FlowList(BaseModel):
    flows: list[FlowOut]


class RunStarted(BaseModel):
    id: str
    flow: str
    state: str
    replayed: bool = False  # an Idempotency-Key seen before: the first request's run


class RunSummary(BaseModel):
    id: str
    flow: str
    state: str
    input: Any = None
    created_at: float
    ended_at: float | None = None
    error: dict[str, Any] | None = None
    stalled_at: float | None = None


class RunList(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None  # pass as ?cursor= for the next page; None: the last page


class StepOut(BaseModel):
    step: str
    job_id: str
    state: str
    input: Any = None
    output: Any = None
    attempts: int
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None


class RunWait(BaseModel):
    step: str
    signal: str
    key: str
    since: float
    webhook: str | None = None  # a webhook wait: the path that resumes it
    phase: str = "before"  # before the step runs, or after it (before its completion fires)


class RunOut(RunSummary):
    steps: list[StepOut]
    waits: list[RunWait]
    parent: str | None = None  # the run whose step started it
    children: list[str] = []  # the runs its steps started


class Resumed(BaseModel):
    ok: bool
    resumed: int  # waits resumed (a signal) or steps retried (resume)


def wait_out(w: Wait | None) -> WaitOut | None:
    if w is None:
        return None
    kind = next(k for k in ("webhook", "delay", "cron", "signal") if getattr(w, k) is not None)
    return WaitOut(
        kind=kind,
        delay=w.delay,
        cron=None if w.cron is None else w.cron.pattern,
        signal=w.signal,
        key=w.key if isinstance(w.key, str) or w.key is None else "<function>",
        timeout=w.timeout,
        on_timeout=w.on_timeout,
        signed=None if w.webhook is None else w.webhook.signed,
    )


def publishers(f: FlowDef, trigger: str) -> list[str]:
    """The steps of ``f`` that fire ``trigger``: ``step:NAME`` is NAME completing, any
    other trigger is emitted by the steps that declare it."""
    if trigger.startswith(STEP_PREFIX):
        return [trigger[len(STEP_PREFIX) :]]
    return [p.name for p in f.steps.values() if trigger in p.emits]


def flow_out(f: FlowDef) -> FlowOut:
    edges = [
        EdgeOut(source=source, target=s.name, trigger=t)
        for s in f.steps.values()
        for t in s.subscribes
        for source in publishers(f, t)
    ]
    return FlowOut(
        name=f.name,
        steps=[
            StepDefOut(
                name=s.name,
                entry=s.entry,
                subscribes=list(s.subscribes),
                emits=list(s.emits),
                wait=wait_out(s.wait),
                after=wait_out(s.after),
                triggers=list(s.triggers),
            )
            for s in f.steps.values()
        ],
        edges=edges,
        entries=[s.name for s in f.entries()],
        leaves=f.leaves(),
        on_failure=f.on_failure,
        cleanup=f.cleanup,
    )


def summary_out(r: RunRecord) -> RunSummary:
    return RunSummary(
        id=r.id,
        flow=r.flow,
        state=r.state,
        input=r.input,
        created_at=r.created_at,
        ended_at=r.ended_at,
        error=r.error,
        stalled_at=r.stalled_at,
    )


def run_out(r: RunInfo, prefix: str) -> RunOut:
    return RunOut(
        id=r.id,
        flow=r.flow,
        state=r.state,
        input=r.input,
        created_at=r.created_at,
        ended_at=r.ended_at,
        error=r.error,
        stalled_at=r.stalled_at,
        parent=r.parent,
        children=r.children,
        steps=[
            StepOut(
                step=s.step,
                job_id=s.job_id,
                state=s.state,
                input=s.input,
                output=s.output,
                attempts=s.attempts,
                error=s.error,
                started_at=s.started_at,
                finished_at=s.finished_at,
            )
            for s in r.steps
        ],
        waits=[
            RunWait(
                step=w["step"],
                signal=w["signal"],
                key=w["key"],
                since=w["since"],
                phase=w["phase"],
                webhook=f"{prefix}/runs/{r.id}/webhooks/{w['step']}"
                if w["signal"] == WEBHOOK_SIGNAL
                else None,
            )
            for w in r.waits
        ],
    )
