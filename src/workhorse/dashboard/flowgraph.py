"""A run's graph as SVG shapes: the flow's steps laid out in layers (each step one layer
below the deepest step it follows), an edge per subscription, each step with its state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from workhorse.flows import FlowDef, StepInfo
from workhorse.flows.graph import STEP_PREFIX
from workhorse.flows.waits import Wait

NODE_W, NODE_H = 170, 58
GAP_X, GAP_Y = 40, 56
MARGIN = 20
# The state a step shows when several of its jobs exist (a step runs once per trigger
# occurrence): the least advanced one, so a step is green only once all its jobs are.
ORDER = ("failed", "cancelled", "active", "retrying", "queued", "scheduled", "missing")


@dataclass(slots=True)
class Node:
    name: str
    state: str  # a job state, "waiting" (for a signal) or "pending" (not started yet)
    jobs: int  # how many jobs the step has in this run
    join: bool
    wait: str  # what it waits for before running ("" for nothing)
    runtime: str  # "inline", "process", "command"...
    x: int = 0
    y: int = 0


@dataclass(slots=True)
class Edge:
    source: str
    target: str
    label: str  # the trigger ("" for a step's own completion)
    x1: int = 0
    y1: int = 0
    x2: int = 0
    y2: int = 0


@dataclass(slots=True)
class Drawing:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0


def _state(jobs: list[StepInfo], waiting: bool) -> str:
    if waiting:
        return "waiting"
    if not jobs:
        return "pending"
    states = {j.state for j in jobs}
    for s in ORDER:
        if s in states:
            return s
    return jobs[0].state


def _wait_text(flow: FlowDef, name: str) -> str:
    step = flow.steps[name]
    after = _text(step.after)
    return ", ".join(t for t in (_text(step.wait), after and "after: " + after) if t)


def _text(w: Wait | None) -> str:
    if w is None:
        return ""
    if w.webhook is not None:
        return "webhook" + (f", {w.timeout:g} s" if w.timeout else "")
    if w.signal is not None:
        return f"signal {w.signal}" + (f", {w.timeout:g} s" if w.timeout else "")
    if w.cron is not None:
        return "cron"
    return f"delay {w.delay:g} s" if w.delay else "wait"


def _sources(flow: FlowDef, trigger: str) -> list[str]:
    """The steps whose completion or emit fires ``trigger``."""
    if trigger.startswith(STEP_PREFIX):
        return [trigger[len(STEP_PREFIX) :]]
    return sorted(s.name for s in flow.steps.values() if trigger in s.emits)


def layout(
    flow: FlowDef,
    steps: list[StepInfo],
    waiting: set[str],
    runtimes: Mapping[str, str],
) -> Drawing:
    """The drawing of ``flow`` for a run whose step jobs are ``steps``; ``waiting``: steps
    waiting for a signal now; ``runtimes``: each step's task runtime."""
    names = sorted(flow.steps)
    edges = [
        Edge(src, s.name, "" if t.startswith(STEP_PREFIX) else t)
        for s in (flow.steps[n] for n in names)
        for t in s.subscribes
        for src in _sources(flow, t)
        if src in flow.steps
    ]
    # Layer: longest path from an entry, bounded by the step count (a cycle stops there).
    depth = dict.fromkeys(names, 0)
    for _ in range(len(names)):
        changed = False
        for e in edges:
            if e.source != e.target and depth[e.target] < depth[e.source] + 1 < len(names):
                depth[e.target] = depth[e.source] + 1
                changed = True
        if not changed:
            break
    layers: dict[int, list[str]] = {}
    for n in names:
        layers.setdefault(depth[n], []).append(n)
    widest = max((len(v) for v in layers.values()), default=1)
    width = 2 * MARGIN + widest * NODE_W + (widest - 1) * GAP_X
    by_step: dict[str, list[StepInfo]] = {}
    for info in steps:
        by_step.setdefault(info.step, []).append(info)
    out = Drawing(edges=edges, width=width)
    where: dict[str, Node] = {}
    for level in sorted(layers):
        row = layers[level]
        row_w = len(row) * NODE_W + (len(row) - 1) * GAP_X
        left = (width - row_w) // 2
        for i, n in enumerate(row):
            node = Node(
                n,
                _state(by_step.get(n, []), n in waiting),
                len(by_step.get(n, [])),
                flow.steps[n].join,
                _wait_text(flow, n),
                runtimes.get(n, "inline"),
                left + i * (NODE_W + GAP_X),
                MARGIN + level * (NODE_H + GAP_Y),
            )
            out.nodes.append(node)
            where[n] = node
    for e in edges:
        a, b = where[e.source], where[e.target]
        e.x1, e.y1 = a.x + NODE_W // 2, a.y + NODE_H
        e.x2, e.y2 = b.x + NODE_W // 2, b.y
    out.height = 2 * MARGIN + (max(layers, default=0) + 1) * (NODE_H + GAP_Y) - GAP_Y
    return out
