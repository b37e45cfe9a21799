"""Durable event hooks: handlers of the job events in the store's log, run by listeners
of a hook group that keep their cursor in the store (at least once, in order per job)."""

from workhorse.hooks.event import JobEvent
from workhorse.hooks.hook import Hook, HookHandler, HookSet
from workhorse.hooks.listener import Listener
from workhorse.hooks.parked import Parked
from workhorse.hooks.status import GroupStatus, Hooks

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
