"""Runs listed a page at a time from the store's index of runs by creation time: newest
first across pages with a keyset cursor, by flow and by state, unshifted by runs started
meanwhile; a restart moves its run to the top, clear removes its keys, runs stored before
the index are given keys once, and the counts by flow and state are the records'."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import pytest

from workhorse import Workhorse
from workhorse.backends import Backend
from workhorse.flows import RunRecord, keys, listing
from workhorse.job import JobKey


def two_flows(app: Workhorse) -> None:
    """Flows whose entry waits in its queue: with no worker, their runs keep running."""

    @app.task(name="a1", flow="alpha", entry=True)
    async def a1(data: Any) -> Any:
        return data

    @app.task(name="b1", flow="alpha:b", entry=True)  # its name starts with alpha's
    async def b1(data: Any) -> Any:
        return data


async def started(app: Workhorse, n_alpha: int, n_beta: int) -> list[str]:
    # The store's backfill done first (it finds no run): the runs' keys are their starts'.
    await app.flows.indexed()
    ids = []
    for i in range(max(n_alpha, n_beta)):
        if i < n_alpha:
            ids.append((await app.flows.start("alpha", i)).id)
        if i < n_beta:
            ids.append((await app.flows.start("alpha:b", i)).id)
    return ids


def newest_first(runs: list[RunRecord]) -> list[str]:
    return [r.id for r in sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True)]


async def every_page(app: Workhorse, limit: int, **filters: Any) -> list[list[str]]:
    pages, after = [], None
    while page := await app.flows.list(limit=limit, after=after, **filters):
        pages.append([r.id for r in page])
        after = JobKey(page[-1].id, page[-1].created_at)
    return pages


def flat(pages: list[list[str]]) -> list[str]:
    return [run_id for page in pages for run_id in page]


async def records_of(app: Workhorse, ids: list[str]) -> list[RunRecord]:
    return [await app.flows._record(i) for i in ids]


def reads(backend: Backend) -> tuple[collections.Counter[str], Callable[[], None]]:
    """The run records a caller reads, and whether it scanned them all, by kind."""
    seen: collections.Counter[str] = collections.Counter()
    get, get_many, scan = backend.kv_get, backend.kv_get_many, backend.kv_scan

    async def counted_get(key: str) -> str | None:
        if key.startswith(keys.runs_prefix()):
            seen["record"] += 1
        return await get(key)

    async def counted_get_many(ks: list[str]) -> dict[str, str]:
        seen["record"] += sum(k.startswith(keys.runs_prefix()) for k in ks)
        return await get_many(ks)

    async def counted_scan(prefix: str, *args: Any, **kw: Any) -> dict[str, str]:
        if prefix == keys.runs_prefix():
            seen["every record"] += 1
        return await scan(prefix, *args, **kw)

    backend.kv_get = counted_get  # type: ignore[method-assign]
    backend.kv_get_many = counted_get_many  # type: ignore[method-assign]
    backend.kv_scan = counted_scan  # type: ignore[method-assign]

    def undo() -> None:
        del backend.kv_get, backend.kv_get_many, backend.kv_scan

    return seen, undo


async def test_pages_newest_first_across_flows_and_by_flow(app: Workhorse) -> None:
    two_flows(app)
    ids = await started(app, 7, 5)
    runs = await records_of(app, ids)
    assert flat(await every_page(app, 3)) == newest_first(runs)
    assert [len(p) for p in await every_page(app, 5)] == [5, 5, 2]
    alpha = newest_first([r for r in runs if r.flow == "alpha"])
    assert flat(await every_page(app, 2, flow="alpha")) == alpha
    assert [r.id for r in await app.flows.list("alpha", limit=3)] == alpha[:3]
    assert len(await app.flows.list("alpha:b", limit=None)) == 5
    assert await app.flows.list("alph", limit=None) == []


async def test_a_run_whose_entry_waits_for_a_signal_is_listed(app: Workhorse) -> None:
    @app.task(name="gate", flow="gated", entry=True, wait={"signal": "open"})
    async def gate(data: Any) -> Any:
        return data

    two_flows(app)
    await app.flows.indexed()  # the backfill done first: the keys are the starts'
    ids = [(await app.flows.start(f, 0)).id for f in ("alpha", "gated", "alpha")]
    assert [r.id for r in await app.flows.list(limit=None)] == ids[::-1]
    assert [r.id for r in await app.flows.list("gated")] == [ids[1]]


async def test_a_page_reads_about_one_page_not_every_run(app: Workhorse) -> None:
    two_flows(app)
    await started(app, 30, 10)
    await app.flows.list(limit=1)  # the store's index checked once (``backfill``)
    seen, undo = reads(app.backend)
    try:
        page = await app.flows.list("alpha", limit=4)
        assert len(page) == 4
    finally:
        undo()
    assert seen == {"record": 4}


async def test_state_filter_reads_on_until_the_page_is_full(
    app: Workhorse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "READ_AHEAD", 3)  # several rounds through the index
    two_flows(app)
    ids = await started(app, 10, 4)
    cancelled = ids[1:12:3]  # alpha and alpha:b runs
    for run_id in cancelled:
        assert await app.flows.cancel(run_id)
    runs = await records_of(app, ids)
    assert {r.id for r in runs if r.state == "cancelled"} == set(cancelled)
    assert flat(await every_page(app, 2, state="cancelled")) == newest_first(
        [r for r in runs if r.id in cancelled]
    )
    want = newest_first([r for r in runs if r.id in cancelled and r.flow == "alpha"])
    assert flat(await every_page(app, 1, flow="alpha", state="cancelled")) == want
    running = newest_first([r for r in runs if r.state == "running"])
    assert flat(await every_page(app, 4, state="running")) == running
    assert await app.flows.list("alpha", "failed", limit=None) == []


async def test_runs_started_during_paging_shift_nothing(app: Workhorse) -> None:
    two_flows(app)
    ids = await started(app, 6, 0)
    want = newest_first(await records_of(app, ids))
    first = await app.flows.list("alpha", limit=2)
    assert [r.id for r in first] == want[:2]
    await started(app, 3, 2)  # newer than every run listed
    after = JobKey(first[-1].id, first[-1].created_at)
    assert [r.id for r in await app.flows.list("alpha", limit=2, after=after)] == want[2:4]
    assert [r.id for r in await app.flows.list(limit=10, after=after)] == want[2:]


async def test_a_restart_lists_its_run_first_once(app: Workhorse) -> None:
    two_flows(app)
    ids = await started(app, 5, 0)
    oldest = ids[0]
    assert await app.flows.cancel(oldest)
    before = listing.entries(await app.flows._record(oldest))
    await app.flows.restart(oldest)
    listed = flat(await every_page(app, 2))
    assert listed[0] == oldest
    assert sorted(listed) == sorted(ids)
    # The run's keys moved: two, both under its new creation time.
    rec = await app.flows._record(oldest)
    index = {**await app.backend.kv_scan(keys.index_prefix(None))}
    index.update(await app.backend.kv_scan(keys.index_prefix("alpha")))
    assert [k for k in index if k.endswith(oldest)] == list(listing.entries(rec))
    # A restart killed before it removed the run's former keys: still listed once.
    for key, value in before.items():
        await app.backend.kv_set(key, value)
    assert flat(await every_page(app, 2)) == listed
    assert [r.id for r in await app.flows.list("alpha", limit=None)] == listed


async def test_clear_removes_the_runs_index_keys(app: Workhorse) -> None:
    two_flows(app)
    ids = await started(app, 3, 3)
    for run_id in ids[:4]:
        assert await app.flows.cancel(run_id)
    assert await app.flows.clear() == 4
    for prefix in (keys.index_prefix(f) for f in (None, "alpha", "alpha:b")):
        assert {k[-keys.RUN_ID_LEN :] for k in await app.backend.kv_scan(prefix)} <= set(ids[4:])
    assert len(await app.backend.kv_scan(keys.index_prefix(None))) == 2
    assert sorted(r.id for r in await app.flows.list(limit=None)) == sorted(ids[4:])


async def test_runs_stored_before_the_index_are_listed(app: Workhorse) -> None:
    two_flows(app)
    ids = await started(app, 4, 3)
    want = newest_first(await records_of(app, ids))
    for key in await app.backend.kv_scan(f"{keys.PREFIX}index:"):  # as an older version left them
        await app.backend.kv_delete(key)
    await app.backend.kv_delete(keys.INDEXED)
    for _ in range(2):  # a backfill run again (two listers, one killed) writes the same keys
        app.flows._indexed = None
        await app.backend.kv_delete(keys.INDEXED)
        assert flat(await every_page(app, 3)) == want
    assert len(await app.backend.kv_scan(keys.index_prefix(None))) == len(ids)
    assert await app.backend.kv_get(keys.INDEXED) is not None


async def test_counts_are_the_records(app: Workhorse, monkeypatch: pytest.MonkeyPatch) -> None:
    two_flows(app)
    ids = await started(app, 5, 3)
    for run_id in ids[:3]:
        assert await app.flows.cancel(run_id)
    # An ender killed after the run's end marker, before anything else (its live entry,
    # its event): the record reads failed, and so do the counts.
    rec = await app.flows._record(ids[5])
    mark = '{"state": "failed", "at": 1.0, "error": null}'
    assert await app.backend.set_if_absent(keys.end_key(rec.id, rec.gen), mark)
    runs = await records_of(app, ids)
    want: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in runs:
        want[r.flow][r.state] += 1
    counts, every = await app.flows.counts()
    assert every
    assert {f: {s: n for s, n in c.items() if n} for f, c in counts.items()} == want
    assert set(counts["alpha"]) == {"running", "completed", "failed", "cancelled"}
    # Past the runs counted: the newest only, and it says so.
    monkeypatch.setattr(listing, "COUNTED", 4)
    counts, every = await app.flows.counts()
    assert not every
    newest = {r.id: r for r in runs}
    top = [newest[i] for i in newest_first(runs)[:4]]
    assert sum(sum(c.values()) for c in counts.values()) == 4
    for r in top:
        assert counts[r.flow][r.state] >= 1
