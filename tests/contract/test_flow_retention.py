"""Retention of ended flow runs: a completed run is removed once ``keep_completed_for`` has
passed, a failed or cancelled one once ``keep_failed_for`` has, a flow's ``keep_for``
overrides both, and None (or "forever") keeps a run until ``app.flows.clear``. Removal
leaves no key of the run, never touches a running run (nor one restarted after its old
end was filed, nor one its ender is still settling), and goes a bounded batch per pass.
The periods used are 0 (passed at once) and an hour (never passes during a test); runs
are ended by ``cancel`` where no worker is needed, so a test's own passes are the only
ones."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.conftest import close_and_drop
from workhorse import ConfigError, Workhorse
from workhorse.backends import Backend
from workhorse.flows import keys, listing, records

HOUR = 3600.0


@pytest.fixture
async def make_app(backend: Backend) -> AsyncIterator[Callable[..., Any]]:
    """An app on the test's store with the retention settings given."""
    made: list[Workhorse] = []

    async def make(**settings: Any) -> Workhorse:
        app = Workhorse(backend=backend, poll_interval=0.05, **settings)
        await app.open()
        made.append(app)
        return app

    yield make
    # Every app closed before the one drop: a close writes its last counts, which would
    # make again a store dropped before it.
    for app in made[:-1]:
        await app.close()
        await backend.open()
    if made:
        await close_and_drop(made[-1], backend)


def one_step(app: Workhorse, flow: str, fails: bool = False, **policies: Any) -> None:
    @app.task(name=f"{flow}_step", flow=flow, entry=True, retries=0)
    async def step(data: Any) -> Any:
        if fails:
            raise RuntimeError("no")
        return data

    if policies:
        app.flows.define(flow, **policies)


async def keys_of(app: Workhorse, run_id: str) -> list[str]:
    """Every key of the flows' space that names the run or holds it, but a start's key
    (``flows:once:``: the starter's, kept a day with a ttl, as an enqueue's)."""
    found = await app.backend.kv_scan(keys.PREFIX)
    once = keys.PREFIX + "once:"
    return sorted(
        k for k, v in found.items() if run_id in k or (run_id in v and not k.startswith(once))
    )


async def nothing(limit: int = 0) -> tuple[int, bool]:
    return 0, False


async def filed(app: Workhorse) -> list[str]:
    return list(await app.backend.kv_scan(keys.expiry_prefix()))


@pytest.mark.parametrize(
    ("completed_for", "failed_for"), [(0.0, HOUR), (HOUR, 0.0)], ids=["completed", "failed"]
)
async def test_an_ended_run_is_removed_once_its_states_period_passed(
    make_app: Callable[..., Any], completed_for: float, failed_for: float
) -> None:
    app = await make_app(keep_completed_for=completed_for, keep_failed_for=failed_for)
    one_step(app, "good")
    one_step(app, "bad", fails=True)
    good, bad = await app.flows.start("good", 1), await app.flows.start("bad", 1)
    engine = app.flows.engine
    # The worker's own passes (its maintenance) are held off: this test's are the only ones.
    # Its jobs' retention still runs: with keep_failed_for=0 it may purge the failed step's
    # record before the step's check (test_flow_ends.py has that case alone).
    passes, engine.expire = engine.expire, nothing  # type: ignore[method-assign]
    await app.worker(concurrency=2, burst=True).run()
    for run in (good, bad):  # ended now if the burst worker left before its check did
        await app.flows.check(run.id)
    assert (await good.wait(timeout=10)).state == "completed"
    try:
        await bad.wait(timeout=10)
    except TimeoutError:
        found = await app.backend.kv_scan(keys.PREFIX)
        print("KEYS", {k: v for k, v in found.items() if bad.id in k or bad.id in v})
        print("EVENTS", [(e.type, e.data) for e in await app.flows.events(bad.id)])
        print("INFO", await app.flows.get(bad.id))
        raise
    gone, kept = (good, bad) if completed_for == 0 else (bad, good)
    assert await keys_of(app, gone.id)  # its record, index, end marker, retention entry
    assert await passes() == (1, False)
    assert await keys_of(app, gone.id) == []
    with pytest.raises(LookupError):
        await app.flows.get(gone.id)
    with pytest.raises(LookupError, match="removed after its end"):
        await gone.wait(timeout=10)
    assert (await app.flows.get(kept.id)).state == ("failed" if kept is bad else "completed")
    assert [k for k in await filed(app) if kept.id in k]  # due in an hour


async def test_a_flows_keep_for_overrides_the_settings_and_none_keeps_forever(
    make_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await make_app(keep_failed_for=0)
    one_step(app, "plain")
    one_step(app, "quick", keep_for=0)
    one_step(app, "kept", keep_for=HOUR)
    one_step(app, "always", keep_for="forever")
    runs = {f: await app.flows.start(f, 1) for f in ("plain", "quick", "kept", "always")}
    for run in runs.values():
        assert await app.flows.cancel(run.id)
    assert await app.flows.engine.expire() == (2, False)  # plain (the settings' 0) and quick
    left = {f: bool(await keys_of(app, run.id)) for f, run in runs.items()}
    assert left == {"plain": False, "quick": False, "kept": True, "always": True}
    assert not [k for k in await filed(app) if runs["always"].id in k]  # never filed

    # None: kept until cleared (an argument of None means unset: the environment says it).
    monkeypatch.setenv("WORKHORSE_KEEP_FAILED_FOR", "none")
    never = await make_app()
    assert never.settings.keep_failed_for is None
    one_step(never, "plain")
    run = await never.flows.start("plain", 1)
    await never.flows.cancel(run.id)
    assert not [k for k in await filed(never) if run.id in k]
    assert await never.flows.engine.expire() == (0, False)
    assert (await never.flows.get(run.id)).state == "cancelled"
    assert await never.flows.clear("plain") == 1  # clear removes it whatever its retention
    assert await keys_of(never, run.id) == []


async def test_keep_for_is_checked_at_definition(app: Workhorse) -> None:
    for bad in (-1, "always", float("inf"), True):
        with pytest.raises(ConfigError, match="keep_for"):
            app.flows.define("f", keep_for=bad)


async def test_a_running_or_restarted_run_is_never_removed_by_an_old_entry(app: Workhorse) -> None:
    one_step(app, "again", keep_for=0)
    run = await app.flows.start("again", 1)
    other = await app.flows.start("again", 2)
    assert await app.flows.engine.expire() == (0, False)  # nothing ended: nothing filed
    await app.flows.cancel(run.id)
    await app.flows.restart(run.id)  # generation 1 runs; generation 0's entry is due
    assert len([k for k in await filed(app) if run.id in k]) == 1
    assert await app.flows.engine.expire() == (0, False)
    info = await app.flows.get(run.id)
    assert (info.state, len(info.steps)) == ("running", 1)
    assert await filed(app) == []  # the stale entry went
    assert (await app.flows.get(other.id)).state == "running"
    await app.flows.cancel(run.id)
    assert await app.flows.engine.expire() == (1, False)
    assert await keys_of(app, run.id) == []
    assert await keys_of(app, other.id)


async def test_a_run_its_ender_is_still_settling_is_looked_at_again_later(
    app: Workhorse,
) -> None:
    one_step(app, "slow", keep_for=0)
    run = await app.flows.start("slow", 1)
    await app.flows.cancel(run.id)
    # Its live entry back, as an ender killed before it settled the run leaves it.
    await app.backend.kv_set(keys.live_key(run.id), "slow")
    assert await app.flows.engine.expire() == (0, False)
    assert (await app.flows.get(run.id)).state == "cancelled"
    (later,) = [k for k in await filed(app) if run.id in k]
    named = keys.expiry_of(later)
    assert named is not None
    assert named[0] > await app.backend.now() + 30  # after the sweep settled it


async def test_removal_goes_a_bounded_batch_per_pass_and_misses_none(app: Workhorse) -> None:
    one_step(app, "many", keep_for=0)
    runs = [await app.flows.start("many", i) for i in range(7)]
    for run in runs:
        await app.flows.cancel(run.id)
    engine = app.flows.engine
    assert [await engine.expire(limit=3) for _ in range(4)] == [
        (3, True),
        (3, True),
        (1, False),
        (0, False),
    ]
    for run in runs:
        assert await keys_of(app, run.id) == []
    assert await app.flows.list("many") == []


async def test_a_removal_cut_short_after_the_record_is_finished_by_the_next_pass(
    app: Workhorse,
) -> None:
    one_step(app, "cut", keep_for=0)
    run = await app.flows.start("cut", 1)
    await app.flows.cancel(run.id)
    # A pass killed right after the record: it and the run's places in the list of runs
    # (deleted before it) are gone, the rest is not.
    rec = await records.load(app.backend, run.id)
    assert rec is not None
    for k in listing.entries(rec):
        await app.backend.kv_delete(k)
    await app.backend.kv_delete(keys.run_key(run.id))
    assert len(await keys_of(app, run.id)) > 1
    await app.flows.engine.expire()
    assert await keys_of(app, run.id) == []


@pytest.mark.parametrize("removed", ["parent", "child"])
async def test_a_removed_parent_or_child_leaves_no_key_naming_it(
    app: Workhorse, removed: str
) -> None:
    @app.task(name="parent_step", flow="parent", entry=True)
    async def parent_step(data: Any, ctx: Any) -> str:
        return str(await ctx.flow.start("child", data))

    one_step(app, "child")
    for flow in ("parent", "child"):
        app.flows.define(flow, keep_for=0 if flow == removed else HOUR)
    run = await app.flows.start("parent", 1)
    engine = app.flows.engine
    passes, engine.expire = engine.expire, nothing  # type: ignore[method-assign]
    await app.worker(concurrency=2, burst=True).run()
    child = (await run.wait(timeout=10)).steps[0].output
    assert (await app.flows.handle(child).wait(timeout=10)).state == "completed"
    # The parent's index of its children names both.
    assert [k for k in await keys_of(app, run.id) if child in k]
    assert await passes() == (1, False)
    gone, kept = (run.id, child) if removed == "parent" else (child, run.id)
    # A kept child's record still says which run started it.
    assert [k for k in await keys_of(app, gone) if k != keys.run_key(kept)] == []
    assert (await app.flows.get(kept)).state == "completed"
