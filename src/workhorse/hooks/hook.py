"""A hook: a filter (type, task, queue as glob patterns) and a handler, kept in a ``HookSet``."""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from workhorse.errors import ConfigError
from workhorse.hooks.event import JobEvent

HookHandler = Callable[[JobEvent], Awaitable[None] | None]


@dataclass(slots=True)
class Hook:
    name: str
    handler: HookHandler
    type: str = "*"
    task: str | None = None
    queue: str | None = None
    owner: HookSet | None = None

    def matches(self, type_: str, task: str | None, queue: str | None) -> bool:
        return (
            fnmatch.fnmatchcase(type_, self.type)
            and (self.task is None or (task is not None and fnmatch.fnmatchcase(task, self.task)))
            and (
                self.queue is None or (queue is not None and fnmatch.fnmatchcase(queue, self.queue))
            )
        )

    async def call(self, event: JobEvent) -> None:
        if inspect.iscoroutinefunction(self.handler):
            await self.handler(event)
            return
        # A sync handler (a database driver without asyncio) must not block the loop.
        result = await asyncio.to_thread(self.handler, event)
        if inspect.isawaitable(result):
            await result

    def remove(self) -> bool:
        """Unsubscribe: the listener stops calling this hook (events it already took are
        finished). True if it was subscribed."""
        return self.owner.remove(self) if self.owner is not None else False


def default_name(handler: Callable[..., Any]) -> str:
    module = getattr(handler, "__module__", None) or "hook"
    return f"{module}.{getattr(handler, '__qualname__', type(handler).__name__)}"


class HookSet:
    """The app's hooks. A hook's name identifies its parked events across restarts."""

    def __init__(self) -> None:
        self._hooks: list[Hook] = []

    def add(
        self,
        type_: str,
        handler: HookHandler,
        *,
        task: str | None = None,
        queue: str | None = None,
        name: str | None = None,
    ) -> Hook:
        if not callable(handler):
            raise ConfigError(f"a hook's handler must be callable, got {handler!r}")
        if not isinstance(type_, str) or not type_:
            raise ConfigError(f"hook type must be a pattern such as 'job.completed', got {type_!r}")
        hook = Hook(name or default_name(handler), handler, type_, task, queue, self)
        if any(h.name == hook.name for h in self._hooks):
            raise ConfigError(
                f"a hook named {hook.name!r} is already subscribed: give this one its own "
                f"name= (the name keys its parked events)"
            )
        self._hooks.append(hook)
        return hook

    def remove(self, hook: Hook) -> bool:
        if hook in self._hooks:
            self._hooks.remove(hook)
            return True
        return False

    def remove_handler(self, handler: HookHandler, type_: str | None = None) -> int:
        """Remove every hook of ``handler`` (of ``type_`` only, if given); how many."""
        gone = [
            h for h in self._hooks if h.handler is handler and (type_ is None or h.type == type_)
        ]
        for h in gone:
            self._hooks.remove(h)
        return len(gone)

    def matching(self, type_: str, task: str | None, queue: str | None) -> list[Hook]:
        return [h for h in self._hooks if h.matches(type_, task, queue)]

    def get(self, name: str) -> Hook | None:
        return next((h for h in self._hooks if h.name == name), None)

    def __len__(self) -> int:
        return len(self._hooks)

    def __iter__(self) -> Any:
        return iter(list(self._hooks))
