"""Flows: steps (tasks) joined by triggers, run above the client on every backend.

A step's follow-ups are enqueued inside its attempt, before its outcome is written, with
job ids derived from the run, the step and the trigger's occurrence: a step that runs
again re-enqueues nothing new, and a worker killed at any point loses no step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workhorse import lazy

if TYPE_CHECKING:
    from workhorse.flows.context import FlowContext, State
    from workhorse.flows.engine import Engine
    from workhorse.flows.facade import Flows, NothingToResume, RestartInFlight, RunHandle, of_run
    from workhorse.flows.graph import FlowDef, Graph, Step
    from workhorse.flows.once import KeyInFlight, KeyReused
    from workhorse.flows.records import FlowFailed, RunInfo, RunRecord, StepInfo

# The task options that make a task a step (also read from a discovered module): here,
# not in .graph, so that the app's decorator reads them without loading a flow's modules.
FLOW_OPTIONS = ("flow", "entry", "subscribes", "emits", "wait", "triggers")

# Each name's module, imported on first use: an app without flows loads none of them.
_HOME = {
    **dict.fromkeys(("FlowContext", "State"), ".context"),
    "Engine": ".engine",
    **dict.fromkeys(
        ("Flows", "NothingToResume", "RestartInFlight", "RunHandle", "of_run"), ".facade"
    ),
    **dict.fromkeys(("KeyInFlight", "KeyReused"), ".once"),
    **dict.fromkeys(("FlowDef", "Graph", "Step"), ".graph"),
    **dict.fromkeys(("FlowFailed", "RunInfo", "RunRecord", "StepInfo"), ".records"),
}

__getattr__ = lazy.names(__name__, _HOME)


__all__ = [
    "FLOW_OPTIONS",
    "Engine",
    "FlowContext",
    "FlowDef",
    "FlowFailed",
    "Flows",
    "Graph",
    "KeyInFlight",
    "KeyReused",
    "NothingToResume",
    "RestartInFlight",
    "RunHandle",
    "RunInfo",
    "RunRecord",
    "State",
    "Step",
    "StepInfo",
    "of_run",
]
