"""Fires cron ticks. Every worker runs one; no leader is needed.

Each tick is claimed in the store with ``set_if_absent("cron:NAME:FINGERPRINT:TICK")``, so
however many workers run, one of them enqueues it. A tick missed while every worker was
down is fired once on recovery (``catch_up="once"``) or not at all (``"skip"``); only the
latest missed tick counts, never a backlog. A schedule's first sighting is recorded, so a
newly added or changed schedule never fires a tick from before it existed."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from workhorse import codec
from workhorse.scheduler import schedules
from workhorse.scheduler.schedules import Schedule

if TYPE_CHECKING:
    from workhorse.app import Workhorse

log = logging.getLogger("workhorse.scheduler")

SKIP_GRACE = 5.0  # with catch_up="skip", a tick this late still fires (a slow worker loop)
REFRESH = 5.0  # seconds between reloads of the stored schedules


def tick_key(schedule: Schedule, tick: datetime) -> str:
    return f"cron:{schedule.name}:{schedule.cron.fingerprint()}:{int(tick.timestamp())}"


def last_key(name: str) -> str:
    return f"cron:{name}:last"


class Ticker:
    def __init__(self, app: Workhorse, owner: str) -> None:
        self.app = app
        self.owner = owner
        self._since: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        backend = self.app.backend
        await schedules.sync_declared(backend, self.app.declared_schedules())
        loaded: dict[str, Schedule] = {}
        loaded_at = -REFRESH
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if loop.time() - loaded_at >= REFRESH:
                    loaded = await schedules.load(backend)
                    loaded_at = loop.time()
                now = datetime.fromtimestamp(await backend.now(), UTC)
                wait = REFRESH
                for schedule in loaded.values():
                    await self._fire_due(schedule, now)
                    until = (schedule.cron.next_after(now) - now).total_seconds()
                    wait = min(wait, until)
            except Exception:
                log.exception("scheduler pass failed; trying again")
                wait = 1.0
            try:
                async with asyncio.timeout(max(0.01, wait)):
                    await stop.wait()
            except TimeoutError:
                pass

    async def _first_seen(self, schedule: Schedule, now: datetime) -> float:
        key = f"cron:{schedule.name}:{schedule.cron.fingerprint()}:since"
        cached = self._since.get(key)
        if cached is not None:
            return cached
        backend = self.app.backend
        stamp = str(now.timestamp())
        if not await backend.set_if_absent(key, stamp):
            stamp = await backend.kv_get(key) or stamp
        self._since[key] = float(stamp)
        return self._since[key]

    async def _fire_due(self, schedule: Schedule, now: datetime) -> None:
        tick = schedule.cron.latest_at_or_before(now)
        if tick.timestamp() < await self._first_seen(schedule, now):
            return
        late = (now - tick).total_seconds()
        if schedule.cron.catch_up == "skip" and late > SKIP_GRACE:
            return
        period = (schedule.cron.next_after(tick) - tick).total_seconds()
        ttl = max(2 * period, 3600.0)
        backend = self.app.backend
        if not await backend.set_if_absent(tick_key(schedule, tick), self.owner, ttl):
            return
        task = self.app.tasks.get(schedule.task)
        if task is None:
            log.error(
                "schedule %r names unknown task %r; tick %s not fired",
                schedule.name,
                schedule.task,
                tick.isoformat(),
            )
            return
        handle = await self.app.enqueue(task, schedule.cron.data)
        await backend.kv_set(
            last_key(schedule.name),
            codec.dumps({"tick": tick.timestamp(), "job_id": handle.id}).decode(),
            ttl,
        )
        log.info(
            "schedule %r fired tick %s as job %s%s",
            schedule.name,
            tick.isoformat(),
            handle.id,
            f" ({late:.0f}s late)" if late > 1 else "",
        )


def next_runs(schedule: Schedule, now: datetime, n: int = 1) -> list[datetime]:
    out, t = [], now
    for _ in range(n):
        t = schedule.cron.next_after(t)
        out.append(t)
    return out


__all__ = ["Ticker", "last_key", "next_runs", "tick_key", "timedelta"]
