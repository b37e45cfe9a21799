"""What a step sees of its run: ``ctx.flow`` (ids, emit, start, cancel) and ``ctx.state``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from workhorse import codec
from workhorse.client import Client
from workhorse.errors import ConfigError
from workhorse.flows import keys
from workhorse.flows.graph import FlowDef, Graph, Step
from workhorse.job import Claim, Event, NewJob
from workhorse.settings import check_name
from workhorse.task import Task

Scope = Literal["run", "global"]


@dataclass(slots=True)
class StepMeta:
    """Which run, flow, step and generation a step job is."""

    run: str
    flow: str
    step: str
    gen: int


async def step_of(
    graph: Graph, backend: Any, task: str | None, job_id: str | None
) -> StepMeta | None:
    """The flow, run and step a job is, or None for a job that is no step of a run. The
    id tells the run; the store is asked only for a task in several flows."""
    steps = graph.tasks.get(task or "")
    if not steps or not job_id:
        return None
    if len(steps) == 1:
        return step_in(steps[0], job_id)
    found = keys.run_of(job_id)
    if found is None:
        return None
    run = found[0]
    raw = await backend.kv_get(keys.job_key(run, job_id))
    if raw is None:
        return None
    d = codec.loads(raw)
    return StepMeta(run, d["flow"], d["step"], d["gen"])


def step_in(step: Step, job_id: str) -> StepMeta | None:
    """The run of ``step`` (its task's only step) that job ``job_id`` is, read from the id
    alone: None for a job of the task that is no step of a run."""
    found = keys.run_of(job_id)
    return None if found is None else StepMeta(found[0], step.flow, step.name, found[1])


class Engine(Protocol):
    """What a step's context asks of the engine (kept apart: the engine builds contexts)."""

    client: Client
    graph: Graph

    async def fire(self, fc: FlowContext, trigger: str, data: Any, occurrence: str) -> None: ...

    async def start_run(self, flow: str, data: Any = None, parent: str | None = None) -> str: ...

    async def cancel_run(self, run: str) -> bool: ...

    def note(self, fc: FlowContext, type_: str, **data: Any) -> asyncio.Future[None]: ...

    def flush(self, fc: FlowContext) -> None: ...


class FlowContext:
    """``ctx.flow`` of a step's attempt."""

    __slots__ = (
        "_counts",
        "claimed",
        "deferred",
        "emitted",
        "engine",
        "followups",
        "fresh",
        "handed",
        "held",
        "job_id",
        "last",
        "meta",
        "queue",
        "reserved",
        "writer",
    )

    def __init__(
        self, engine: Engine, meta: StepMeta, job_id: str, queue: str | None = None
    ) -> None:
        self.engine = engine
        self.meta = meta
        self.job_id = job_id
        self.queue = queue
        self.followups: list[str] = []  # ids of the steps this attempt started (or waits on)
        # Its completion wrote new jobs of plain steps, which check the run after it.
        self.handed = False
        self.claimed = 0  # step jobs it claimed, not yet in the run's count
        self.reserved = False  # it added RESERVED to the run's count (engine.fire)
        self.last: asyncio.Future[None] | None = None  # its latest event, being written
        # Its own events not yet sent (Engine.hold): its finish may write them.
        self.held: list[Event] = []
        # Its completion's new jobs of plain steps, written by its finish (Engine.fire),
        # and whether every other step that completion started was new.
        self.deferred: Sequence[tuple[Claim, Task[Any, Any], NewJob]] = ()
        self.fresh = True
        # Occurrences of each emitted trigger and started flow, made at the first.
        self._counts: dict[str, int] | None = None
        # Its emits' new jobs of plain steps not yet written, and the task writing them
        # (Engine.defer): the emits of one stretch of the handler share a store call.
        self.emitted: list[tuple[Claim, Task[Any, Any], NewJob]] = []
        self.writer: asyncio.Task[None] | None = None

    async def noted(self) -> None:
        """Wait until the attempt's events are stored (they go out in order), those it
        held included."""
        if self.held:
            self.engine.flush(self)
        if self.last is not None:
            await self.last

    def make_state(self) -> State:
        """The step's ``ctx.state`` (made by the job's context at its first use)."""
        engine, meta = self.engine, self.meta
        return State(engine.client, meta.run, engine.graph.flows.get(meta.flow), self)

    @property
    def run_id(self) -> str:
        return self.meta.run

    @property
    def flow(self) -> str:
        return self.meta.flow

    @property
    def step(self) -> str:
        return self.meta.step

    async def emit(self, trigger: str, data: Any = None) -> None:
        """Fire ``trigger`` in this run: the steps subscribed to it start (each call is
        one occurrence; an attempt that runs again repeats the same occurrences, and
        starts nothing twice). Their jobs are written as soon as the handler next waits,
        with the other emits made until then, and always before the step's outcome."""
        step = self.engine.graph.step(self.meta.flow, self.meta.step)
        if step is None or trigger not in step.emits:
            declared = list(step.emits) if step else []
            raise ConfigError(
                f"step {self.meta.step!r} emits {trigger!r} but declares emits={declared}; "
                f"add {trigger!r} to its emits=[...]"
            )
        if self._counts is None:
            self._counts = {}
        n = self._counts.get(trigger, 0)
        self._counts[trigger] = n + 1
        try:
            size: int | None = len(codec.dumps(data))
        except TypeError:  # not JSON: the enqueue below refuses it, naming the fix
            size = None
        self.engine.note(self, "emit", trigger=trigger, size=size)
        await self.engine.fire(self, trigger, data, str(n))

    async def start(self, flow: str, data: Any = None) -> str:
        """Start another flow's run; returns its run id. Each call is one occurrence, as
        an emit's: an attempt that runs again gets the runs its first made (the n-th
        start of a flow in the attempt, whatever its data), not new ones."""
        from workhorse.flows.once import start_once  # only steps that start runs load it

        if self._counts is None:
            self._counts = {}
        counted = "\0" + flow  # no trigger's name: emits and starts counted apart
        n = self._counts.get(counted, 0)
        self._counts[counted] = n + 1
        key = f"{self.job_id}:{n}"
        engine, run = self.engine, self.meta.run
        backend = engine.client.backend

        def start(flow: str, data: Any) -> Awaitable[str]:
            return engine.start_run(flow, data, parent=run)

        run_id, _ = await start_once(backend, start, flow, data, key, "step", same_data=False)
        # Its parent's cancel lists the children after the parent's end: one that ended
        # before this child was listed finds its end here.
        if await backend.kv_get(keys.end_key(run, self.meta.gen)) is not None:
            await engine.cancel_run(run_id)
        return run_id

    async def cancel(self) -> None:
        """Cancel this run: its other queued and running steps are cancelled."""
        await self.engine.cancel_run(self.meta.run)


class State:
    """``ctx.state``: JSON values kept per run (or, with ``scope="global"``, shared by all
    runs), each with an optional TTL; the flow's cleanup rule removes a run's values."""

    __slots__ = ("client", "flow", "marked", "run", "step")

    def __init__(
        self, client: Client, run: str, flow: FlowDef | None, step: FlowContext | None = None
    ) -> None:
        self.client = client
        self.run = run
        self.flow = flow
        self.step = step  # the step whose ``ctx.state`` this is: it writes ``state`` events
        self.marked = False  # the run is marked as keeping state (see ``_mark``)

    async def _mark(self) -> None:
        """Mark the run's live entry once per attempt, so its end clears its state (an
        unmarked run's end skips the look for state)."""
        flow = self.flow
        if self.marked or flow is None or flow.cleanup not in ("on_complete", "immediate"):
            return
        await self.client.backend.kv_set(keys.live_key(self.run), flow.name + keys.STATEFUL)
        self.marked = True

    def _note(self, name: str, op: str, scope: Scope) -> None:
        if self.step is not None:
            self.step.engine.note(self.step, "state", key=name, op=op, scope=scope)

    def _key(self, name: str, scope: Scope) -> str:
        check_name(name, "state key")
        if scope not in ("run", "global"):
            raise ConfigError(f"scope must be 'run' or 'global', got {scope!r}")
        return keys.state_prefix(self.run if scope == "run" else None) + name

    async def get(self, name: str, default: Any = None, *, scope: Scope = "run") -> Any:
        raw = await self.client.backend.kv_get(self._key(name, scope))
        return default if raw is None else codec.loads(raw)

    async def set(
        self, name: str, value: Any, *, ttl: float | None = None, scope: Scope = "run"
    ) -> None:
        if ttl is None and scope == "run" and self.flow is not None:
            ttl = self.flow.state_ttl
        if ttl is not None and (isinstance(ttl, bool) or not ttl > 0):
            raise ConfigError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        raw = codec.dumps(value).decode()
        key = self._key(name, scope)
        if scope == "run":
            await self._mark()
        await self.client.backend.kv_set(key, raw, ttl)
        self._note(name, "set", scope)

    async def delete(self, name: str, *, scope: Scope = "run") -> bool:
        deleted = await self.client.backend.kv_delete(self._key(name, scope))
        if deleted:
            self._note(name, "deleted", scope)
        return deleted

    async def all(self, *, scope: Scope = "run") -> dict[str, Any]:
        prefix = keys.state_prefix(self.run if scope == "run" else None)
        got = await self.client.backend.kv_scan(prefix)
        return {k[len(prefix) :]: codec.loads(v) for k, v in got.items()}

    async def clear(self) -> int:
        """Remove the run's values (not the global ones)."""
        prefix = keys.state_prefix(self.run)
        got = await self.client.backend.kv_scan(prefix)
        for k in got:
            await self.client.backend.kv_delete(k)
        return len(got)
