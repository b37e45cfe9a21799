"""Fires cron ticks. Every worker runs one; no leader is needed.

Each tick is claimed in the store with ``set_if_absent("cron:NAME:FINGERPRINT:TICK")``, so
however many workers run, one of them enqueues it, then marks the tick fired. A worker
killed between its claim and that mark leaves the claim pending: after a lease, a worker
that sees it takes it over and fires the tick under the same job id (derived from the
tick), so a job the dead worker did store is found, never made twice. A tick missed while
every worker was down is fired once on recovery (``catch_up="once"``) or not at all
(``"skip"``); only the latest missed tick counts, never a backlog. A schedule's first
sighting is recorded, so a newly added or changed schedule never fires a tick from before
it existed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from workhorse import codec, events, schedules
from workhorse.client import client_of
from workhorse.job import NewJob
from workhorse.schedules import Schedule, last_key

if TYPE_CHECKING:
    from workhorse.client import Client, HasClient
    from workhorse.task import Task

log = logging.getLogger("workhorse.scheduler")

SKIP_GRACE = 5.0  # with catch_up="skip", a tick this late still fires (a slow worker loop)
REFRESH = 5.0  # seconds between reloads of the stored schedules


def tick_key(schedule: Schedule, tick: datetime) -> str:
    return f"cron:{schedule.name}:{schedule.cron.fingerprint()}:{int(tick.timestamp())}"


# A tick key holds PENDING<claimed at> <owner> from the claim until the job is enqueued,
# then FIRED<job id>. (A value in neither form was written by an older version: fired.)
PENDING = "pending "
FIRED = "fired "


def tick_job_id(schedule: Schedule, tick: datetime) -> str:
    """The id of a tick's job: the same for every worker, so a second try finds the first
    job instead of making another. Shaped as ``new_job_id`` makes them (milliseconds, then
    20 hex digits), so it sorts by the tick's time."""
    digest = hashlib.sha256(tick_key(schedule, tick).encode()).hexdigest()[:20]
    return f"{int(tick.timestamp() * 1000):012x}{digest}"


class Ticker:
    def __init__(self, client: Client | HasClient, owner: str) -> None:
        self.client = client_of(client)
        self.owner = owner
        self._since: dict[str, float] = {}
        self._unknown: dict[str, datetime] = {}  # the last tick logged as unknown, by schedule
        self._done: dict[str, str] = {}  # the latest tick's key, once fired, by schedule
        # Ticks seen claimed by another worker but not yet fired, by schedule, then key.
        self._pending: dict[str, dict[str, datetime]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        backend = self.client.backend
        synced = False
        loaded: dict[str, Schedule] = {}
        loaded_at = -REFRESH
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if not synced:
                    # Retried with the passes: a store that is down at start must not end
                    # this worker's scheduler for good.
                    await schedules.sync_declared(
                        backend, self.client.registry.declared_schedules()
                    )
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
        backend = self.client.backend
        stamp = str(now.timestamp())
        if not await backend.set_if_absent(key, stamp):
            stamp = await backend.kv_get(key) or stamp
        self._since[key] = float(stamp)
        return self._since[key]

    async def _fire_due(self, schedule: Schedule, now: datetime) -> None:
        # Ticks seen claimed by another worker and not yet fired are looked at again: if
        # that worker died, this one fires them, even when a later tick has come since.
        for tick in sorted(self._pending.get(schedule.name, {}).values()):
            await self._try(schedule, tick, now, claimed=True)
        tick = schedule.cron.latest_at_or_before(now)
        if self._done.get(schedule.name) == tick_key(schedule, tick):
            return  # this tick was fired (here or elsewhere): no round trip per pass
        if tick.timestamp() < await self._first_seen(schedule, now):
            return
        await self._try(schedule, tick, now, claimed=False)

    async def _try(self, schedule: Schedule, tick: datetime, now: datetime, claimed: bool) -> None:
        """Claim and fire one tick, take over a claim its worker left unconfirmed, or note
        that another worker is firing it. ``claimed``: a tick seen claimed before."""
        key = tick_key(schedule, tick)
        late = (now - tick).total_seconds()
        task = self.client.registry.tasks.get(schedule.task)
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
        # Built before the claim: a payload this worker's task refuses claims nothing.
        new = self.client.new_job(task, schedule.cron.data, {})
        new.id = tick_job_id(schedule, tick)
        backend = self.client.backend
        ttl = _ttl(schedule, tick)
        claim = f"{PENDING}{now.timestamp()} {self.owner}"
        # A tick claimed in time stays due whatever its catch_up policy.
        in_time = claimed or schedule.cron.catch_up == "once" or late <= SKIP_GRACE
        if not (in_time and await backend.set_if_absent(key, claim, ttl)):
            held = await backend.kv_get(key)
            if held is None or not held.startswith(PENDING):
                # Fired (a value in neither form is an older version's: fired too), or
                # never claimed and skipped by its policy, or given back after a failed
                # enqueue (a later pass claims it).
                if held is not None or not in_time:
                    self._settle(schedule, key)
                return
            self._pending.setdefault(schedule.name, {})[key] = tick
            claimed_at = float(held[len(PENDING) :].split(" ", 1)[0])
            if now.timestamp() - claimed_at < self.client.settings.lease:
                return  # being fired elsewhere; look again next pass
            # Claimed more than a lease ago and never confirmed: its worker died between
            # the claim and the confirmation. Take the claim over (kv_delete with the old
            # value lets one taker through) and fire it under the same job id, so a job
            # the dead worker did store is found, not made twice.
            if not await backend.kv_delete(key, held):
                return
            if not await backend.set_if_absent(key, claim, ttl):
                return
            log.warning(
                "schedule %r: tick %s was claimed %.0fs ago and never confirmed; firing it here",
                schedule.name,
                tick.isoformat(),
                now.timestamp() - claimed_at,
            )
        # Enqueue and confirmation are shielded: a worker stopping between the two must
        # not leave a claimed tick unconfirmed. The stop waits for them (a few round trips).
        firing = asyncio.ensure_future(self._fire(schedule, task, new, tick, late, claim))
        try:
            await asyncio.shield(firing)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await firing
            raise

    def _settle(self, schedule: Schedule, key: str) -> None:
        """Nothing is left to do for this tick here. (Settling an older tick replaces the
        latest one's mark: that costs one look at the latest tick, nothing more.)"""
        self._pending.get(schedule.name, {}).pop(key, None)
        self._done[schedule.name] = key

    async def _fire(
        self,
        schedule: Schedule,
        task: Task[Any, Any],
        new: NewJob,
        tick: datetime,
        late: float,
        claim: str,
    ) -> None:
        backend = self.client.backend
        key, ttl = tick_key(schedule, tick), _ttl(schedule, tick)
        try:
            job = await backend.get(new.id)
            job_id = job.id if job is not None else (await self.client.submit(task, new, {})).id
        except Exception:
            # Give the tick back so that a later pass (here or elsewhere) fires it.
            with contextlib.suppress(Exception):
                await backend.kv_delete(key, claim)
            raise
        await backend.kv_set(key, f"{FIRED}{job_id}", ttl)
        self._settle(schedule, key)
        if self.client.bus.wants("cron.fired"):
            self.client.bus.emit(
                events.cron_fired(schedule.name, job_id, task.name, new.queue, tick.timestamp())
            )
        await backend.kv_set(
            last_key(schedule.name),
            codec.dumps({"tick": tick.timestamp(), "job_id": job_id}).decode(),
            ttl,
        )
        log.info(
            "schedule %r fired tick %s as job %s%s",
            schedule.name,
            tick.isoformat(),
            job_id,
            f" ({late:.0f}s late)" if late > 1 else "",
        )


def _ttl(schedule: Schedule, tick: datetime) -> float:
    """How long a tick's key is kept: past the next tick, so no pass can miss it."""
    period = (schedule.cron.next_after(tick) - tick).total_seconds()
    return max(2 * period, 3600.0)


def next_runs(schedule: Schedule, now: datetime, n: int = 1) -> list[datetime]:
    out, t = [], now
    for _ in range(n):
        t = schedule.cron.next_after(t)
        out.append(t)
    return out


__all__ = ["Ticker", "last_key", "next_runs", "tick_key", "timedelta"]
