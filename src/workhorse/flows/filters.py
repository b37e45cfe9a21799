"""A hook handler that only sees the events of some flows (``app.on(..., flow="...")``):
flow events name their flow in their data; a step's job events are of its run's flow."""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, Protocol

from workhorse.client import Client
from workhorse.flows.context import step_of
from workhorse.flows.graph import Graph


class Flows(Protocol):
    """What the filter asks of the app's flows (kept apart: the app holds both)."""

    client: Client
    graph: Graph


async def flow_of(event: Any, flows: Flows) -> str | None:
    """The flow of a durable event: named in its data (flow.*, step.*, emit, state), or
    the flow of the run whose step its job is (job.*)."""
    flow = (getattr(event, "extra", None) or {}).get("flow")
    if isinstance(flow, str):
        return flow
    meta = await step_of(flows.graph, flows.client.backend, event.task, event.job_id)
    return None if meta is None else meta.flow


def only_flow(handler: Callable[..., Any], pattern: str, flows: Flows) -> Callable[..., Any]:
    """``handler``, called only for events of flows matching the glob ``pattern``; it
    keeps the handler's name, so its parked events keep their key. A sync handler still
    runs off the event loop."""

    async def filtered(event: Any) -> Any:
        flow = await flow_of(event, flows)
        if flow is None or not fnmatch.fnmatchcase(flow, pattern):
            return None
        if inspect.iscoroutinefunction(handler):
            return await handler(event)
        result = await asyncio.to_thread(handler, event)
        return await result if inspect.isawaitable(result) else result

    filtered.__module__ = getattr(handler, "__module__", None) or "hook"
    filtered.__qualname__ = getattr(handler, "__qualname__", type(handler).__name__)
    return filtered
