"""Fires cron ticks. Every worker runs one; no leader is needed.

Each tick is claimed in the store with ``set_if_absent("cron:NAME:FINGERPRINT:TICK")``, so
however many workers run, one of them enqueues it. A tick missed while every worker was
down is fired once on recovery (``catch_up="once"``) or not at all (``"skip"``); only the
latest missed tick counts, never a backlog. A schedule's first sighting is recorded, so a
newly added or changed schedule never fires a tick from before it existed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from workhorse import codec
from workhorse.scheduler import schedules
from workhorse.scheduler.schedules import Schedule

if TYPE_CHECKING:
    from workhorse.app import Workhorse
    from workhorse.task import Task

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
        self._unknown: dict[str, datetime] = {}  # the last tick logged as unknown, by schedule
        self._done: dict[str, str] = {}  # the last tick key claimed by anyone, by schedule

    async def run(self, stop: asyncio.Event) -> None:
        backend = self.app.backend
        synced = False
        loaded: dict[str, Schedule] = {}
        loaded_at = -REFRESH
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if not synced:
                    # Retried with the passes: a store that is down at start must not end
                    # this worker's scheduler for good.
                    await schedules.sync_declared(backend, self.app.declared_schedules())
                    synced = True
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
        done = tick_key(schedule, tick)
        if self._done.get(schedule.name) == done:
            return  # this tick was claimed (here or elsewhere): no round trip per pass
        if tick.timestamp() < await self._first_seen(schedule, now):
            return
        late = (now - tick).total_seconds()
        if schedule.cron.catch_up == "skip" and late > SKIP_GRACE:
            return
        task = self.app.tasks.get(schedule.task)
        if task is None:
            # Leave the tick to a worker that knows the task (a rolling deploy); claiming it
            # here would lose it.
            if self._unknown.get(schedule.name) != tick:
                self._unknown[schedule.name] = tick
                log.error(
                    "schedule %r names task %r, which this worker does not know; tick %s "
                    "left to other workers",
                    schedule.name,
                    schedule.task,
                    tick.isoformat(),
                )
            return
        # Claim and enqueue are shielded: a worker stopping between the two must not leave a
        # claimed tick without its job. The stop waits for them (two round trips).
        firing = asyncio.ensure_future(self._fire(schedule, task, tick, late))
        try:
            await asyncio.shield(firing)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await firing
            raise

    async def _fire(
        self, schedule: Schedule, task: Task[Any, Any], tick: datetime, late: float
    ) -> None:
        period = (schedule.cron.next_after(tick) - tick).total_seconds()
        ttl = max(2 * period, 3600.0)
        backend = self.app.backend
        key = tick_key(schedule, tick)
        won = await backend.set_if_absent(key, self.owner, ttl)
        self._done[schedule.name] = key
        if not won:
            return
        try:
            handle = await self.app.enqueue(task, schedule.cron.data)
        except Exception:
            # Give the tick back so that a later pass (here or elsewhere) fires it.
            del self._done[schedule.name]
            with contextlib.suppress(Exception):
                await backend.kv_delete(key, self.owner)
            raise
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
