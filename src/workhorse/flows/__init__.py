"""Flows: steps (tasks) joined by triggers, run above the client on every backend.

A step's follow-ups are enqueued inside its attempt, before its outcome is written, with
job ids derived from the run, the step and the trigger's occurrence: a step that runs
again re-enqueues nothing new, and a worker killed at any point loses no step."""

from workhorse.flows.context import FlowContext, State
from workhorse.flows.engine import Engine
from workhorse.flows.facade import Flows, RunHandle, of_run
from workhorse.flows.graph import FLOW_OPTIONS, FlowDef, Graph, Step
from workhorse.flows.records import FlowFailed, RunInfo, RunRecord, StepInfo

__all__ = [
    "FLOW_OPTIONS",
    "Engine",
    "FlowContext",
    "FlowDef",
    "FlowFailed",
    "Flows",
    "Graph",
    "RunHandle",
    "RunInfo",
    "RunRecord",
    "State",
    "Step",
    "StepInfo",
    "of_run",
]
