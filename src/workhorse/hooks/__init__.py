"""Durable event hooks: handlers of the job events in the store's log, run by listeners
of a hook group that keep their cursor in the store (at least once, in order per job)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workhorse import lazy

if TYPE_CHECKING:
    from workhorse.hooks.event import JobEvent
    from workhorse.hooks.hook import Hook, HookHandler, HookSet
    from workhorse.hooks.listener import Listener
    from workhorse.hooks.parked import Parked
    from workhorse.hooks.status import GroupStatus, Hooks

# Each name's module, imported on first use: an app without hooks loads only the set.
_HOME = {
    "JobEvent": ".event",
    **dict.fromkeys(("Hook", "HookHandler", "HookSet"), ".hook"),
    "Listener": ".listener",
    "Parked": ".parked",
    **dict.fromkeys(("GroupStatus", "Hooks"), ".status"),
}

__getattr__ = lazy.names(__name__, _HOME)


__all__ = [
    "GroupStatus",
    "Hook",
    "HookHandler",
    "HookSet",
    "Hooks",
    "JobEvent",
    "Listener",
    "Parked",
]
