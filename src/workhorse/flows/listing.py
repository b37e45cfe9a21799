"""Runs newest first, a page at a time: the store keeps an index of runs by creation time
(of every flow, and of each flow), written with the run's start, and a page reads about
one page of it (``Backend.kv_scan`` with a limit), not every run."""

from __future__ import annotations

from collections.abc import Iterable

from workhorse.backends import Backend
from workhorse.flows import keys, records
from workhorse.flows.records import RUN_STATES, RunRecord
from workhorse.job import JobKey

# Index keys read in a state filter's first round; each round after reads twice as many,
# up to READ_MOST: a page of a rare state reads on through the flow's runs in few rounds.
READ_AHEAD = 200
READ_MOST = 5000
# Runs the counts by flow and state cover, the newest (a count over every run would read
# every run).
COUNTED = 1000
# Runs written per store call by the backfill.
BACKFILL_BATCH = 500


def entries(rec: RunRecord) -> dict[str, str]:
    """The run's keys in the indexes (of every flow, of its flow): each holds its flow."""
    return {
        keys.index_key(None, rec.created_at, rec.id): rec.flow,
        keys.index_key(rec.flow, rec.created_at, rec.id): rec.flow,
    }


async def page(
    backend: Backend,
    flow: str | None,
    state: str | None,
    limit: int,
    after: JobKey | None = None,
) -> list[RunRecord]:
    """Up to ``limit`` runs newest first (creation time, then id), of ``flow`` and in
    ``state`` if given, after the run ``after`` names (a keyset page)."""
    prefix = keys.index_prefix(flow)
    cursor = None if after is None else keys.index_key(flow, after.created, after.id)
    step = limit if state is None else max(limit, READ_AHEAD)
    out: list[RunRecord] = []
    while len(out) < limit:
        found = await backend.kv_scan(prefix, step, reverse=True, after=cursor)
        out += [
            r for r in await _load(backend, found) if r is not None and state in (None, r.state)
        ]
        if len(found) < step:
            break
        cursor = next(reversed(found))
        if state is not None:
            step = min(2 * step, max(READ_MOST, limit))
    return out[:limit]


async def _load(backend: Backend, found: Iterable[str]) -> list[RunRecord | None]:
    """The records an index page names, None for an entry whose run is gone (cleared) or
    left behind by a restart (its key has the run's earlier creation time)."""
    found = list(found)
    recs = await records.load_many(backend, [k[-keys.RUN_ID_LEN :] for k in found])
    return [
        rec
        if (rec := recs.get(key[-keys.RUN_ID_LEN :])) is not None and key.endswith(_tail(rec))
        else None
        for key in found
    ]


def _tail(rec: RunRecord) -> str:
    return keys.index_key(None, rec.created_at, rec.id)[len(keys.index_prefix(None)) :]


async def counts(backend: Backend, names: Iterable[str]) -> tuple[dict[str, dict[str, int]], bool]:
    """Runs by flow and state among the newest COUNTED runs (every defined flow present),
    and whether those were every run."""
    found = await backend.kv_scan(keys.index_prefix(None), COUNTED + 1, reverse=True)
    every = len(found) <= COUNTED
    out = {name: dict.fromkeys(RUN_STATES, 0) for name in names}
    for rec in await _load(backend, list(found)[:COUNTED]):
        if rec is not None:
            out.setdefault(rec.flow, dict.fromkeys(RUN_STATES, 0))[rec.state] += 1
    return out, every


async def backfill(backend: Backend) -> None:
    """Give the runs stored before the index their keys, once per store: the keys are
    derived from the records, so a backfill run twice (two listers at once, or one killed
    midway) writes the same keys again. An entry it writes for a run cleared or
    restarted meanwhile names no record, and readers pass it by (``_load``)."""
    if await backend.kv_get(keys.INDEXED) is not None:
        return
    runs = [RunRecord.loads(v) for v in (await backend.kv_scan(keys.runs_prefix())).values()]
    for i in range(0, len(runs), BACKFILL_BATCH):
        written: dict[str, str] = {}
        for rec in runs[i : i + BACKFILL_BATCH]:
            written.update(entries(rec))
        await backend.enqueue_claimed_with([], written, [])
    await backend.kv_set(keys.INDEXED, "1")
