"""Schedules in the store: declared ones (from code) and ones added at run time (API).

A schedule is one key, ``schedule:NAME``, holding its task and cron rule as JSON. Every
worker reads them, so a schedule added through the API on one machine fires everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from workhorse import codec
from workhorse.backends.base import Backend
from workhorse.cron import CronSpec, parse_cron

PREFIX = "schedule:"


def last_key(name: str) -> str:
    """The key that holds a schedule's last fired tick and job."""
    return f"cron:{name}:last"


Source = Literal["code", "api"]


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    task: str
    cron: CronSpec
    source: Source = "code"

    def encode(self) -> str:
        return codec.dumps(
            {"task": self.task, "cron": self.cron.to_json(), "source": self.source}
        ).decode()

    @classmethod
    def decode(cls, name: str, raw: str) -> Schedule:
        value = codec.loads(raw)
        return cls(name, value["task"], parse_cron(value["cron"]), value.get("source", "code"))


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """What ``app.schedules()`` and ``workhorse cron`` show."""

    name: str
    task: str
    pattern: str
    timezone: str
    data: Any
    source: Source
    next_run: datetime
    last_run: datetime | None
    last_job_id: str | None


async def load(backend: Backend) -> dict[str, Schedule]:
    found = await backend.kv_scan(PREFIX)
    return {k[len(PREFIX) :]: Schedule.decode(k[len(PREFIX) :], v) for k, v in found.items()}


async def sync_declared(backend: Backend, declared: dict[str, Schedule]) -> None:
    """Add new and changed declared schedules; remove declared ones no longer in code.
    Schedules added through the API are left alone."""
    stored = await load(backend)
    for name, schedule in declared.items():
        if stored.get(name) != schedule:
            await backend.kv_set(PREFIX + name, schedule.encode())
    for name, schedule in stored.items():
        if schedule.source == "code" and name not in declared:
            await backend.kv_delete(PREFIX + name)


async def put(backend: Backend, schedule: Schedule) -> None:
    await backend.kv_set(PREFIX + schedule.name, schedule.encode())


async def remove(backend: Backend, name: str) -> bool:
    return await backend.kv_delete(PREFIX + name)
