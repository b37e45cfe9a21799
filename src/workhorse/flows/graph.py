"""A flow's definition: its steps, what each subscribes to and emits, checked early."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from workhorse.errors import ConfigError
from workhorse.flows import FLOW_OPTIONS as FLOW_OPTIONS
from workhorse.flows.waits import Wait, make_waits
from workhorse.settings import check_name
from workhorse.task import Seconds, seconds

OnFailure = Literal["fail", "continue"]
Cleanup = Literal["never", "on_complete", "immediate", "ttl"]
ON_FAILURE = ("fail", "continue")
CLEANUP = ("never", "on_complete", "immediate", "ttl")
FOREVER = "forever"  # a flow's keep_for that keeps its ended runs until app.flows.clear
STEP_PREFIX = "step:"


@dataclass(frozen=True, slots=True)
class Step:
    flow: str
    name: str  # the task's name
    entry: bool
    subscribes: tuple[str, ...]
    emits: tuple[str, ...]
    wait: Wait | None = None  # before the step runs
    after: Wait | None = None  # after its handler returned, before its completion fires
    triggers: tuple[str, ...] = ()  # an entry's external triggers: each starts a run

    @property
    def waits(self) -> tuple[Wait, ...]:
        return tuple(w for w in (self.wait, self.after) if w is not None)

    @property
    def join(self) -> bool:
        """A step with several subscriptions runs once all of them fired in the run."""
        return len(self.subscribes) > 1


@dataclass(slots=True)
class FlowDef:
    name: str
    steps: dict[str, Step] = field(default_factory=dict)
    on_failure: OnFailure = "fail"
    cleanup: Cleanup = "on_complete"
    state_ttl: float | None = None  # seconds a state value lives (cleanup="ttl" needs one)
    stall_timeout: float | None = None  # seconds without progress before a run is stalled
    step_timeout: float | None = None  # for its steps whose task sets no timeout
    # Seconds its ended runs are kept (math.inf: forever); None: the settings' for jobs.
    keep_for: float | None = None
    _shape: Shape | None = field(default=None, repr=False, compare=False)  # see shape()

    def last(self) -> str | None:
        """The step whose completion ends a run, when the flow is closed (see ``Shape``)
        and a failure fails the run (else the other branches may go on)."""
        return self.shape().ends

    def counted(self) -> bool:
        """Its runs keep a count of their live steps: no last step ends them (see
        ``last``) and no step waits, so a step looks at its run only when the count says
        it may be over (``Engine.finished``)."""
        return self.shape().counted

    def shape(self) -> Shape:
        """What a finishing step can tell about its run from the definition alone (kept
        until the flow changes)."""
        if self._shape is None:
            self._shape = Shape.of(self)
        return self._shape

    def entries(self) -> list[Step]:
        return [s for s in self.steps.values() if s.entry]

    def started_by(self, trigger: str) -> bool:
        """An entry lists ``trigger``: firing it from outside starts a run."""
        return any(trigger in s.triggers for s in self.entries())

    def subscribers(self, trigger: str) -> tuple[Step, ...]:
        """The steps subscribed to ``trigger``, in definition order (read on every step:
        kept with the shape)."""
        return self.shape().subscribed.get(trigger, ())

    def leaves(self) -> list[str]:
        """Steps nothing follows: their outputs are the run's result."""
        return _leaves(self, self.shape().subscribed)

    def check(self) -> None:
        """Every subscription has a producer: a step of this flow, or a declared emit."""
        if not self.entries():
            raise ConfigError(f"flow {self.name!r} has no entry step; mark one with entry=True")
        emitted = {t for s in self.steps.values() for t in s.emits}
        for s in self.steps.values():
            for t in s.subscribes:
                if t.startswith(STEP_PREFIX):
                    if t[len(STEP_PREFIX) :] not in self.steps:
                        raise ConfigError(
                            f"step {s.name!r} of flow {self.name!r} subscribes to {t!r}, but "
                            f"the flow has no such step (steps: {', '.join(sorted(self.steps))})"
                        )
                elif t not in emitted:
                    raise ConfigError(
                        f"step {s.name!r} of flow {self.name!r} subscribes to {t!r}, which no "
                        f"step of the flow emits; add emits=[{t!r}] to the step that emits it"
                    )


@dataclass(frozen=True, slots=True)
class Shape:
    # step -> the steps its completion starts, each as one job at once, when all of
    # them are plain (no join, no wait for a signal or webhook); absent otherwise.
    handoff: dict[str, tuple[Step, ...]]
    # The step every run ends with, when the flow is closed: nothing emits and the steps
    # form no cycle and have one leaf. Then every step is an ancestor of the leaf and runs
    # once per run: with a failure failing the run (``FlowDef.last``), the leaf's
    # completion means every step completed, and the run is over without a look at the
    # store.
    last: str | None
    waits: bool  # a step of the flow waits for a signal or a webhook
    subscribed: dict[str, tuple[Step, ...]]  # trigger -> the steps subscribed to it
    signalled: frozenset[str]  # the triggers a step that waits for a signal subscribes to
    # ``FlowDef.last`` and ``FlowDef.counted``, read several times a step: kept here (the
    # shape is made again when the flow's steps or its on_failure change).
    ends: str | None = None
    counted: bool = False
    # A closed flow's steps, each after the steps it subscribes to (``closed_ids``), and
    # those whose completion starts a join or a wait for a signal inside their attempt:
    # with their outcome still to be written, the run's last step may already have run.
    order: tuple[Step, ...] = ()
    late: frozenset[str] = frozenset()

    @classmethod
    def of(cls, flow: FlowDef) -> Shape:
        by_trigger: dict[str, list[Step]] = {}
        for step in flow.steps.values():
            for t in step.subscribes:
                by_trigger.setdefault(t, []).append(step)
        subscribed = {t: tuple(steps) for t, steps in by_trigger.items()}
        handoff: dict[str, tuple[Step, ...]] = {}
        late = set()
        for name in flow.steps:
            subs = subscribed.get(STEP_PREFIX + name, ())
            plain = all(not s.join and not waits_for_signal(s) for s in subs)
            if subs and plain and flow.steps[name].after is None:
                handoff[name] = tuple(subs)
            elif not plain:
                late.add(name)
        leaves = _leaves(flow, subscribed)
        closed = (
            len(leaves) == 1
            and not any(s.emits or s.after is not None for s in flow.steps.values())
            and _acyclic(flow, subscribed)
        )
        # A wait after a step (any kind) holds its run open with a waiting entry too.
        waits = any(waits_for_signal(s) or s.after is not None for s in flow.steps.values())
        signalled = frozenset(
            t for t, steps in subscribed.items() if any(waits_for_signal(s) for s in steps)
        )
        last = leaves[0] if closed else None
        ends = last if flow.on_failure == "fail" else None
        order = _ordered(flow) if closed else ()
        counted = ends is None and not waits
        return cls(
            handoff, last, waits, subscribed, signalled, ends, counted, order, frozenset(late)
        )


def waits_for_signal(step: Step) -> bool:
    """Whether the step waits for a signal or a webhook (not just a delay or a time)."""
    return step.wait is not None and (step.wait.signal is not None or step.wait.webhook is not None)


def _leaves(flow: FlowDef, subscribed: dict[str, tuple[Step, ...]]) -> list[str]:
    return [
        s.name
        for s in flow.steps.values()
        if STEP_PREFIX + s.name not in subscribed and not any(t in subscribed for t in s.emits)
    ]


def _ordered(flow: FlowDef) -> tuple[Step, ...]:
    """The steps of an acyclic flow whose triggers are all steps, each after the steps it
    subscribes to; () for any other flow."""
    order: list[Step] = []
    placed: set[str] = set()
    left = list(flow.steps.values())
    while left:
        rest = []
        for step in left:
            if all(t[len(STEP_PREFIX) :] in placed for t in step.subscribes):
                order.append(step)
                placed.add(step.name)
            else:
                rest.append(step)
        if len(rest) == len(left):
            return ()
        left = rest
    return tuple(order)


def _acyclic(flow: FlowDef, subscribed: dict[str, tuple[Step, ...]]) -> bool:
    done: set[str] = set()
    path: set[str] = set()

    def visit(name: str) -> bool:
        if name in path:
            return False
        if name in done:
            return True
        path.add(name)
        ok = all(visit(s.name) for s in subscribed.get(STEP_PREFIX + name, ()))
        path.discard(name)
        done.add(name)
        return ok

    return all(visit(name) for name in flow.steps)


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{what} must be a list of trigger names, e.g. ['user.created']")
    for v in value:
        if not isinstance(v, str):
            raise ConfigError(f"{what} must hold trigger names (strings), got {v!r}")
        check_name(v, "trigger")
    return tuple(value)


class Graph:
    """Every flow of an app, built as steps are registered."""

    def __init__(self) -> None:
        self.flows: dict[str, FlowDef] = {}
        self.tasks: dict[str, list[Step]] = {}  # task name -> its steps (one per flow)

    def __bool__(self) -> bool:
        return bool(self.flows)

    def flow(self, name: str) -> FlowDef:
        found = self.flows.get(name)
        if found is None:
            known = ", ".join(sorted(self.flows)) or "none"
            raise ConfigError(f"unknown flow {name!r}; known flows: {known}")
        return found

    def _flow(self, name: str) -> FlowDef:
        check_name(name, "flow")
        return self.flows.setdefault(name, FlowDef(name))

    def configure(
        self,
        name: str,
        *,
        on_failure: OnFailure | None = None,
        cleanup: Cleanup | None = None,
        state_ttl: float | None = None,
        stall_timeout: float | None = None,
        step_timeout: float | None = None,
        keep_for: Seconds | Literal["forever"] | None = None,
    ) -> FlowDef:
        f = self._flow(name)
        if keep_for is not None:
            if keep_for == FOREVER:
                f.keep_for = math.inf
            else:
                try:
                    f.keep_for = seconds(keep_for, "keep_for")  # type: ignore[arg-type]
                except ConfigError as exc:
                    raise ConfigError(
                        f"flow {name!r}: {exc} (or 'forever': kept until app.flows.clear)"
                    ) from None
        if on_failure is not None:
            if on_failure not in ON_FAILURE:
                raise ConfigError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
            f.on_failure = on_failure
            f._shape = None  # its ends and counted depend on it
        if cleanup is not None:
            if cleanup not in CLEANUP:
                raise ConfigError(f"cleanup must be one of {CLEANUP}, got {cleanup!r}")
            f.cleanup = cleanup
        if state_ttl is not None:
            if (
                isinstance(state_ttl, bool)
                or not isinstance(state_ttl, int | float)
                or (state_ttl <= 0)
            ):
                raise ConfigError(f"state_ttl must be a number of seconds > 0, got {state_ttl!r}")
            f.state_ttl = float(state_ttl)
        if step_timeout is not None:
            f.step_timeout = _positive(step_timeout, "step_timeout")
        if stall_timeout is not None:
            if (
                isinstance(stall_timeout, bool)
                or not isinstance(stall_timeout, int | float)
                or stall_timeout <= 0
            ):
                raise ConfigError(
                    f"stall_timeout must be a number of seconds > 0, got {stall_timeout!r}"
                )
            f.stall_timeout = float(stall_timeout)
        if f.cleanup == "ttl" and f.state_ttl is None:
            raise ConfigError(f"flow {name!r}: cleanup='ttl' needs state_ttl=<seconds>")
        return f

    def add_step(
        self,
        task: str,
        flow: str | Sequence[str],
        entry: bool = False,
        subscribes: Sequence[str] | None = None,
        emits: Sequence[str] | None = None,
        wait: Any = None,
        triggers: Sequence[str] | None = None,
    ) -> list[Step]:
        flows = [flow] if isinstance(flow, str) else list(flow)
        if not flows:
            raise ConfigError(f"task {task!r}: flow= names at least one flow")
        if not isinstance(entry, bool):
            raise ConfigError(f"task {task!r}: entry must be True or False, got {entry!r}")
        subs = _names(subscribes, "subscribes")
        if entry == bool(subs):
            raise ConfigError(
                f"step {task!r} needs entry=True or subscribes=[...], and not both "
                "(an entry step starts the run; others run when their triggers fire)"
            )
        if len(set(subs)) != len(subs):
            raise ConfigError(f"step {task!r} subscribes to a trigger twice: {list(subs)}")
        started = _names(triggers, "triggers")
        if any(t.startswith(STEP_PREFIX) for t in started):
            raise ConfigError(
                f"step {task!r}: {STEP_PREFIX}NAME fires when a step completes inside a run; "
                "name an external trigger without that prefix, e.g. triggers=['user.signup']"
            )
        if started and not entry:
            raise ConfigError(
                f"step {task!r}: triggers=[...] start a run, so only an entry step "
                "(entry=True) lists them; a later step subscribes=[...] instead"
            )
        if len(set(started)) != len(started):
            raise ConfigError(f"step {task!r} lists a trigger twice: {list(started)}")
        before, after = make_waits(wait)
        steps = []
        for name in flows:
            f = self._flow(name)
            f._shape = None
            step = Step(name, task, entry, subs, _names(emits, "emits"), before, after, started)
            f.steps[task] = step
            steps.append(step)
        self.tasks[task] = [s for s in self.tasks.get(task, []) if s.flow not in flows] + steps
        return steps

    def started_by(self, trigger: str) -> list[FlowDef]:
        """The flows an external ``trigger`` starts, by name."""
        return [self.flows[n] for n in sorted(self.flows) if self.flows[n].started_by(trigger)]

    def step(self, flow: str, task: str) -> Step | None:
        f = self.flows.get(flow)
        return None if f is None else f.steps.get(task)
