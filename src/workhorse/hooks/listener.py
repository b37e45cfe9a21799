"""The listener: reads the durable event log for one hook group and calls its hooks.

Delivery is at least once: a partition's cursor moves only after the hooks returned (or
the event was parked), so a listener killed mid-batch leaves its events to the next owner
of the partition. Listeners of one group share the partitions, a fair share each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import defaultdict
from typing import Any

from workhorse import codec
from workhorse.client import Client
from workhorse.hooks import lost, parked
from workhorse.hooks.event import JobEvent, enrich
from workhorse.hooks.group import Group, head, partition_of
from workhorse.hooks.hook import Hook, HookSet
from workhorse.job import Event

log = logging.getLogger("workhorse.hooks")


class Listener:
    """``Listener(client, hooks, group=...)``; ``await listener.run()`` until ``stop()``.

    Options default to the settings (``hook_*``): ``partitions``, ``attempts`` (calls of
    a failing hook before its event is parked), ``retry_delay`` (doubled per attempt),
    ``lease`` (seconds a dead listener's partitions stay held), ``poll_interval``.
    ``from_start``: a group never seen before reads the whole log instead of starting at
    its end."""

    def __init__(
        self,
        client: Client,
        hooks: HookSet,
        *,
        group: str | None = None,
        partitions: int | None = None,
        attempts: int | None = None,
        retry_delay: float | None = None,
        lease: float | None = None,
        poll_interval: float | None = None,
        batch: int = 500,
        from_start: bool = False,
    ) -> None:
        s = client.settings
        self.client = client
        self.hooks = hooks
        self.group = Group(client, group or s.hook_group)
        self.wanted_partitions = partitions or s.hook_partitions
        self.attempts = max(1, attempts or s.hook_attempts)
        self.retry_delay = s.hook_retry_delay if retry_delay is None else retry_delay
        self.lease = lease or s.hook_lease
        self.poll_interval = poll_interval or s.hook_poll_interval
        self.batch = batch
        self.from_start = from_start
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.partitions = 0
        self.handled = 0  # hook calls that returned
        self.parked = 0
        self._held: dict[int, int] = {}  # partition -> its cursor
        self._start: int | None = None
        self._next_loss_check = 0.0
        self._stop = asyncio.Event()

    @property
    def held(self) -> list[int]:
        """The partitions this listener owns now."""
        return sorted(self._held)

    def stop(self) -> None:
        """Finish the batch at hand, save the cursors, give the partitions back, return."""
        self._stop.set()

    async def run(self) -> None:
        try:
            self.partitions = await self.group.partitions(self.wanted_partitions)
            if self.partitions != self.wanted_partitions:
                log.warning(
                    "hook group %r has %d partitions (set when it was created); %d asked "
                    "for is ignored: use a new group name to change it",
                    self.group.name,
                    self.partitions,
                    self.wanted_partitions,
                )
            await self._beat()
            keeper = asyncio.create_task(self._keep(), name="workhorse-listener-leases")
            try:
                await self._loop()
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
        finally:
            await self._leave()

    async def _loop(self) -> None:
        next_balance = 0.0
        while not self._stop.is_set():
            busy, wait = False, self.poll_interval
            try:
                if time.monotonic() >= next_balance:
                    await self._balance()
                    next_balance = time.monotonic() + self.lease / 3
                busy = await self._step()
            except Exception:
                log.exception("hook listener of group %r: reading failed", self.group.name)
                # A store that is down is asked again in a second, not in a tight loop.
                wait = max(wait, 1.0)
                next_balance = max(next_balance, time.monotonic() + 1.0)
            if not busy:
                wait = min(wait, max(0.0, next_balance - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)

    async def _keep(self) -> None:
        """Renew the leases and the membership on a side task: a hook slower than the
        lease must not lose its partition to another listener (a duplicate)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._beat()
                await self._renew()
            except Exception:
                log.exception("hook listener of group %r: renewing failed", self.group.name)

    # -- partitions --------------------------------------------------------------------
    async def _start_at(self) -> int:
        if self._start is None:
            self._start = 0 if self.from_start else await head(self.client)
        return self._start

    async def _beat(self) -> None:
        """Say this listener is live: the fair share counts the live listeners."""
        backend = await self.client.store()
        info = {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
        await backend.kv_set(
            self.group.member_prefix() + self.id, codec.dumps(info).decode(), self.lease
        )

    async def _balance(self) -> None:
        """Renew the held leases, then hold a fair share of the partitions: take free
        ones up to it, give back those above it (their cursors are saved already)."""
        backend = await self.client.store()
        await self._renew()
        await self.group.hold()
        members = max(1, len(await backend.kv_scan(self.group.member_prefix())))
        fair = math.ceil(self.partitions / members)
        for p in sorted(self._held)[fair:]:
            await backend.kv_delete(self.group.lease_key(p), self.id)
            del self._held[p]
        for p in range(self.partitions):
            if len(self._held) >= fair:
                break
            if p in self._held:
                continue
            if await backend.set_if_absent(self.group.lease_key(p), self.id, self.lease):
                self._held[p] = await self.group.cursor(p, self._start_at)

    async def _renew(self) -> set[int]:
        """Extend the held leases; forget the ones another listener took (ours expired)."""
        if not self._held:
            return set()
        backend = await self.client.store()
        keys = {self.group.lease_key(p): p for p in self._held}
        kept = {keys[k] for k in await backend.kv_extend(dict.fromkeys(keys, self.id), self.lease)}
        for p in set(self._held) - kept:
            log.warning("hook group %r: lost partition %d (lease expired)", self.group.name, p)
            del self._held[p]
        return kept

    async def _leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.group.hold()  # the log keeps what the group has not read yet
            backend = await self.client.store()
            for p in list(self._held):
                await backend.kv_delete(self.group.lease_key(p), self.id)
            await backend.kv_delete(self.group.member_prefix() + self.id)
        self._held.clear()

    # -- delivery ----------------------------------------------------------------------
    async def _step(self) -> bool:
        """Deliver one page of the log to the held partitions; False when nothing is new."""
        if not self._held:
            return False
        low = min(self._held.values())
        page = await self.client.events(low, self.batch)
        if not page:
            return False
        if low > 0 and page[0].id > low + 1 and time.monotonic() >= self._next_loss_check:
            # A gap after the cursor may be the log's retention having trimmed unread
            # events (or only gaps in the ids): looked at now and then, not per page.
            self._next_loss_check = time.monotonic() + self.lease / 3
            await lost.check(self.group, low)
        mine: dict[int, list[tuple[int, list[Hook]]]] = defaultdict(list)
        wanted: list[Event] = []
        for ev in page:
            p = partition_of(ev.job_id, self.partitions)
            if p not in self._held or ev.id <= self._held[p]:
                continue
            hooks = self.hooks.matching(ev.type, ev.task, ev.queue)
            if hooks:
                mine[p].append((len(wanted), hooks))
                wanted.append(ev)
        if wanted:
            joined = await enrich(self.client, wanted)
            await asyncio.gather(
                *(
                    self._run_partition([(joined[i], hooks) for i, hooks in items])
                    for items in mine.values()
                )
            )
        await self._commit(page[-1].id)
        return True

    async def _run_partition(self, items: list[tuple[JobEvent, list[Hook]]]) -> None:
        # One partition's events one after another: one job's events keep their order.
        for event, hooks in items:
            for hook in hooks:
                await self._deliver(hook, event)

    async def _deliver(self, hook: Hook, event: JobEvent) -> None:
        instruments = self.client.instruments
        for attempt in range(1, self.attempts + 1):
            try:
                if instruments:  # tracing: a span per call, linked to the job's trace
                    async with contextlib.AsyncExitStack() as spans:
                        for i in instruments:
                            await spans.enter_async_context(
                                i.delivering(self.client, hook.name, event)
                            )
                        await hook.call(event)
                else:
                    await hook.call(event)
            except Exception as exc:
                if attempt < self.attempts:
                    await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                    continue
                pid = await parked.park(self.group, hook.name, event, exc, attempt)
                self.parked += 1
                log.error(
                    "hook %s failed %d times on event %d (%s, job %s): parked as %s: %s: %s",
                    hook.name,
                    attempt,
                    event.id,
                    event.type,
                    event.job_id,
                    pid,
                    type(exc).__name__,
                    exc,
                )
            else:
                self.handled += 1
            return

    async def _commit(self, last: int) -> None:
        """Save the cursors of the partitions still ours; a lost one is not written, so
        its new owner reads those events again (at least once)."""
        kept = await self._renew()
        backend = await self.client.store()
        writes: list[Any] = []
        for p in kept:
            if last > self._held[p]:
                self._held[p] = last
                writes.append(backend.kv_set(self.group.cursor_key(p), str(last)))
        await asyncio.gather(*writes)
