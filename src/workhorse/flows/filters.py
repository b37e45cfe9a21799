"""A hook handler that only sees the events of some flows (``app.on(..., flow="...")``)."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any


def of_flow(event: Any, pattern: str) -> bool:
    """Whether a durable event (flow.*, step.*, emit, state) is of a flow matching
    the glob ``pattern``: its flow is in the event's data."""
    flow = (getattr(event, "extra", None) or {}).get("flow")
    return isinstance(flow, str) and fnmatch.fnmatchcase(flow, pattern)


def only_flow(handler: Callable[..., Any], pattern: str) -> Callable[..., Any]:
    """``handler``, called only for events of flows matching ``pattern``; it keeps the
    handler's name, so its parked events keep their key."""
    if inspect.iscoroutinefunction(handler):

        async def filtered(event: Any) -> None:
            if of_flow(event, pattern):
                await handler(event)

    else:

        def filtered(event: Any) -> Any:  # type: ignore[misc]
            return handler(event) if of_flow(event, pattern) else None

    filtered.__module__ = getattr(handler, "__module__", None) or "hook"
    filtered.__qualname__ = getattr(handler, "__qualname__", type(handler).__name__)
    return filtered
