"""Retention of ended runs, and the one function that removes a run's keys.

Whoever ends a run's generation files it among the ended runs under its removal time
(``keys.expiry_key``) before it writes the end (``Engine.end_run``), or with it (a finish
that ends the run: ``RunEnd.entry``), so no end is ever written without its entry; the end
marker names the time too (``records.due_of``). The workers' maintenance
reads the entries in order, a bounded batch per pass, and removes the runs that are due
and still ended as filed: an entry whose end was refused (another ender came first) or
whose run was restarted since only goes itself."""

from __future__ import annotations

import math
import time

from workhorse.flows import keys, listing, records
from workhorse.flows.graph import FlowDef
from workhorse.flows.records import RunRecord, RunState
from workhorse.flows.waiting import Waits
from workhorse.settings import Settings

# Entries read per pass: what one pass may remove (a pass that finds them all due tells
# its caller to run another soon).
BATCH = 200
# How much later a due run whose ender has not settled it yet (its live entry is still
# there) is looked at again: the sweep settles it within ``engine.SETTLE_AFTER``.
NOT_SETTLED = 60.0


def keep_for(flow: FlowDef | None, state: RunState, settings: Settings) -> float | None:
    """Seconds a run that ended in ``state`` is kept (None: until ``app.flows.clear``):
    its flow's ``keep_for``, else as long as jobs that ended so."""
    if flow is not None and flow.keep_for is not None:
        return None if math.isinf(flow.keep_for) else flow.keep_for
    return settings.keep_completed_for if state == "completed" else settings.keep_failed_for


def due(flow: FlowDef | None, state: RunState, settings: Settings, at: float) -> float | None:
    """When a run that ended in ``state`` at ``at`` is removed (None: never by retention)."""
    period = keep_for(flow, state, settings)
    return None if period is None else at + period


async def ended_as(waits: Waits, run: str) -> tuple[str, RunRecord, str | None] | None:
    """The run's record as stored, as read with its end, and its generation's end
    marker; None when it has no record."""
    backend = waits.backend
    raw = await backend.kv_get(keys.run_key(run))
    if raw is None:
        return None
    rec = RunRecord.loads(raw)
    mark = await backend.kv_get(keys.end_key(run, rec.gen))
    return raw, records.ended(rec, mark), mark


async def remove_run(waits: Waits, run: str, end: tuple[int, str] | None = None) -> bool:
    """Remove an ended run's keys: its record, step index and resolved marks, join
    inputs, state, children and stall marks, waits, live entry, restart claims, end
    markers and their retention entries, and its entry among its parent's children (its
    global state, its children and its jobs' records are not its). Only while it is
    ended, and with ``end`` (a generation and its end marker) only while that is its
    end: a run restarted since is kept. The record goes first, while it holds what was
    read, so a restart after that finds no run; its end markers and entries go last, so a
    removal cut short is finished by the next pass (``expire``). True when this call
    removed it."""
    found = await ended_as(waits, run)
    if found is None:
        return False
    raw, rec, mark = found
    if rec.state == "running" or (end is not None and end != (rec.gen, mark)):
        return False
    # Held as a restart or a resume holds it: neither brings back a run half removed.
    # The hold is removed with the run's other keys (``remove_keys``).
    token = await records.hold(waits.backend, run, rec.gen)
    if token is None:
        return False
    if await ended_as(waits, run) != found:  # resumed or restarted before the hold
        await records.release(waits.backend, run, rec.gen, token)
        return False
    # Its places in the list of runs first: only the record names them, and a removal
    # cut short before the record goes is done again whole by the next pass.
    for k in listing.entries(rec):
        await waits.backend.kv_delete(k)
    if not await waits.backend.kv_delete(keys.run_key(run), raw):
        await records.release(waits.backend, run, rec.gen, token)
        return False  # changed, or removed, meanwhile
    if rec.parent is not None:  # its entry among its parent's children
        await waits.backend.kv_delete(keys.child_prefix(rec.parent) + run)
    await remove_keys(waits, run, rec.gen)
    return True


async def remove_keys(waits: Waits, run: str, gen: int) -> None:
    """``remove_run``'s part after the record, for generations up to ``gen``."""
    backend = waits.backend
    await waits.drop(run)
    steps = keys.job_prefix(run)
    for k in await backend.kv_scan(steps):
        await backend.kv_delete(keys.resolved_key(k[len(steps) :]))
        await backend.kv_delete(k)
    for prefix in (keys.state_prefix(run), keys.child_prefix(run), f"{keys.PREFIX}stall:{run}:"):
        for k in await backend.kv_scan(prefix):
            await backend.kv_delete(k)
    for g in range(gen + 1):
        for k in await backend.kv_scan(f"{keys.PREFIX}in:{run}:{g}:"):
            await backend.kv_delete(k)
        await backend.kv_delete(keys.restart_key(run, g))
    await backend.kv_delete(keys.live_key(run))  # a late state mark wrote it again
    marks = {g: await backend.kv_get(keys.end_key(run, g)) for g in range(gen + 1)}
    for g in marks:
        await backend.kv_delete(keys.end_key(run, g))
    for g, mark in marks.items():
        due = records.due_of(mark)
        if due is not None:
            await backend.kv_delete(keys.expiry_key(due, run, g))


async def expire(waits: Waits, limit: int = BATCH) -> tuple[int, bool]:
    """One pass: remove the runs due (the first ``limit`` entries at most). Returns how
    many runs it removed, and whether more may be due (every entry it read was)."""
    backend = waits.backend
    now = time.time()
    entries = await backend.kv_scan(keys.expiry_prefix(), limit=limit)
    removed = 0
    for key, mark in entries.items():
        named = keys.expiry_of(key)
        if named is None:
            await backend.kv_delete(key, mark)
            continue
        at, run, gen = named
        if at > now:
            return removed, False
        found = await ended_as(waits, run)
        if found is None:
            if await backend.kv_get(keys.end_key(run, gen)) == mark:
                await remove_keys(waits, run, gen)  # a removal cut short after the record
        elif found[1].state != "running" and (gen, mark) == (found[1].gen, found[2]):
            if await backend.kv_get(keys.live_key(run)) is not None:
                # Its ender is still settling it (state, end event): look again later.
                await backend.kv_set(keys.expiry_key(now + NOT_SETTLED, run, gen), mark)
            elif await remove_run(waits, run, (gen, mark)):
                removed += 1
        await backend.kv_delete(key, mark)  # done, or stale: a restart, a refused end
    return removed, len(entries) >= limit
