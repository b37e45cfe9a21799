"""Parked events: an event a hook failed on after all its attempts, kept with the error
until it is replayed (or dropped); nothing is skipped silently."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

from workhorse import codec
from workhorse.hooks.event import JobEvent
from workhorse.hooks.group import Group


@dataclass(slots=True)
class Parked:
    id: str  # "<event id>:<hook name>"
    group: str
    hook: str
    event: JobEvent
    error: dict[str, Any]
    attempts: int
    at: float


def error_of(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def parked_id(event_id: int, hook: str) -> str:
    return f"{event_id}:{hook}"


def _stored(event: JobEvent) -> dict[str, Any]:
    # The id as text: a PostgreSQL position is past the 64 bits orjson writes and reads.
    return {**event.to_dict(), "id": str(event.id)}


async def park(group: Group, hook: str, event: JobEvent, exc: BaseException, attempts: int) -> str:
    pid = parked_id(event.id, hook)
    value = {
        "hook": hook,
        "event": _stored(event),
        "error": error_of(exc),
        "attempts": attempts,
        "at": time.time(),
    }
    backend = await group.client.store()
    await backend.kv_set(group.parked_prefix() + pid, codec.dumps(value).decode())
    return pid


def _parse(group: Group, pid: str, raw: str) -> Parked:
    v = codec.loads(raw)
    return Parked(
        pid,
        group.name,
        v["hook"],
        JobEvent.from_dict({**v["event"], "id": int(v["event"]["id"])}),
        v["error"],
        int(v["attempts"]),
        float(v["at"]),
    )


async def parked(group: Group) -> list[Parked]:
    """The group's parked events, oldest event first."""
    backend = await group.client.store()
    prefix = group.parked_prefix()
    rows = await backend.kv_scan(prefix)
    out = [_parse(group, key[len(prefix) :], raw) for key, raw in rows.items()]
    return sorted(out, key=lambda p: (p.event.id, p.hook))


async def get(group: Group, pid: str) -> Parked | None:
    backend = await group.client.store()
    raw = await backend.kv_get(group.parked_prefix() + pid)
    return None if raw is None else _parse(group, pid, raw)


async def update(group: Group, item: Parked, exc: BaseException) -> None:
    """A replay failed again: keep the event with the new error."""
    value = {
        "hook": item.hook,
        "event": _stored(item.event),
        "error": error_of(exc),
        "attempts": item.attempts + 1,
        "at": time.time(),
    }
    backend = await group.client.store()
    await backend.kv_set(group.parked_prefix() + item.id, codec.dumps(value).decode())


async def drop(group: Group, pid: str) -> bool:
    backend = await group.client.store()
    return await backend.kv_delete(group.parked_prefix() + pid)
