"""Open event streams end when their server shuts down: uvicorn's graceful shutdown waits
for every response to finish, and a stream (an open dashboard, a client following the event
log) never does, so a SIGTERM would wait for the SIGKILL."""

from __future__ import annotations

_closing = False


def close_streams() -> None:
    """Tell every stream of this process to end after its next poll (``workhorse serve``
    and ``workhorse dashboard`` call it on their shutdown signal)."""
    global _closing
    _closing = True


def closing() -> bool:
    return _closing
