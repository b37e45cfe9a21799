"""Retention per job: ``keep_for`` overrides the settings' ``keep_*_for`` for that job, is
never cut short by the count caps, and a job a run() caller waits for is kept until that
caller has its result. The times used are 0 (passed at once) and an hour (never passes
during a test), so nothing here depends on how fast the machine is."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from workhorse import ConfigError, JobContext, Workhorse
from workhorse.backends import Backend
from workhorse.job import JobState

from .support import claim_one, completed, enqueue_one, must_get, new
from .test_client import RUN, running, task

HOUR = 3600.0
DONE = {JobState.COMPLETED}


async def finished(backend: Backend, keep_for: float | None = None, *, hold: bool = False) -> str:
    job_id = await enqueue_one(backend, replace(new(), keep_for=keep_for, hold=hold))
    lease = await claim_one(backend)
    await backend.finish([(lease, completed())])
    await asyncio.sleep(0.002)  # distinct finish times
    return job_id


async def gone(backend: Backend, *ids: str) -> list[bool]:
    return [await backend.get(i) is None for i in ids]


async def test_a_jobs_own_keep_for_overrides_the_settings(backend: Backend) -> None:
    plain = await finished(backend)
    dropped = await finished(backend, keep_for=0)
    kept = await finished(backend, keep_for=HOUR)
    assert (await must_get(backend, kept)).keep_for == HOUR
    assert (await must_get(backend, plain)).keep_for is None

    # The settings keep finished jobs for an hour: the job that asked for 0 goes.
    assert await backend.purge(states=DONE, older_than=HOUR, retention=True) == 1
    assert await gone(backend, plain, dropped, kept) == [False, True, False]

    # The settings keep nothing: the job that asked for an hour stays, age or count.
    assert await backend.purge(states=DONE, older_than=0, keep_last=0, retention=True) == 1
    assert await gone(backend, plain, kept) == [True, False]

    # An operator's purge is not retention: it deletes what it is told to.
    assert await backend.purge(states=DONE, older_than=0) == 1
    assert await gone(backend, kept) == [True]


async def test_the_count_cap_never_trims_a_job_with_its_own_keep_for(backend: Backend) -> None:
    old, older_kept = await finished(backend), await finished(backend, keep_for=HOUR)
    young = await finished(backend)
    newest_kept = await finished(backend, keep_for=HOUR)
    # keep_last=2: the two newest are newest_kept and young; the own-keep_for jobs count
    # toward the cap but are never what it removes.
    assert await backend.purge(states=DONE, keep_last=2, retention=True) == 1
    assert await gone(backend, old, older_kept, young, newest_kept) == [True, False, False, False]
    assert await backend.purge(states=DONE, keep_last=0, retention=True) == 1
    assert await gone(backend, older_kept, young, newest_kept) == [False, True, False]


async def test_a_held_job_is_kept_until_every_holder_released_it(backend: Backend) -> None:
    first = replace(new(dedup_key="feed:7"), keep_for=0, hold=True)
    job_id = await enqueue_one(backend, first)
    # A second run() caller hits the live job: it holds it too.
    (dup,) = await backend.enqueue([replace(new(dedup_key="feed:7"), keep_for=0, hold=True)])
    assert (dup.id, dup.created) == (job_id, False)
    lease = await claim_one(backend)
    await backend.finish([(lease, completed("done"))])

    # Held: the settings' retention applies (an hour here), not its own keep_for of 0.
    assert await backend.purge(states=DONE, older_than=HOUR, retention=True) == 0
    await backend.release([job_id])
    assert await backend.purge(states=DONE, older_than=HOUR, retention=True) == 0
    assert (await must_get(backend, job_id)).result == "done"  # the last holder reads it
    await backend.release([job_id])
    assert await backend.get(job_id) is None  # its keep_for had passed: deleted at once

    # Released before it finished (a run() that timed out): its keep_for applies then.
    early = await enqueue_one(backend, replace(new(), keep_for=0, hold=True))
    await backend.release([early, "no-such-job"])
    assert await backend.get(early) is not None  # live jobs are never deleted
    await backend.finish([(await claim_one(backend), completed())])
    assert await backend.purge(states=DONE, older_than=HOUR, retention=True) == 1

    # Released with time to go: kept until then, like any job with its own keep_for.
    kept = await finished(backend, keep_for=HOUR, hold=True)
    await backend.release([kept])
    assert await backend.purge(states=DONE, older_than=0, retention=True) == 0
    assert await backend.get(kept) is not None


async def test_run_with_keep_for_zero_gets_its_result_and_leaves_no_record(
    app: Workhorse,
) -> None:
    @task(app, queue="q", singleton=True)
    async def sync_catalog(ctx: JobContext) -> str:
        await asyncio.sleep(0.2)  # both callers are waiting by the time it finishes
        return ctx.job_id

    async with running(app, ["q"]):
        # Two callers of the one execution (a singleton): both get the result, though
        # the record is dropped as soon as the last of them has it.
        a, b = await asyncio.gather(
            app.run(sync_catalog, keep_for=0, timeout=RUN),
            sync_catalog.options(keep_for=0).run(timeout=RUN),
        )
    assert a == b
    assert await app.get_job(a) is None


async def test_keep_for_as_a_task_default_and_per_call(app: Workhorse) -> None:
    @task(app, queue="q", keep_for=HOUR)
    async def export() -> None: ...

    assert (await must_get(app.backend, (await export.enqueue()).id)).keep_for == HOUR
    handle = await export.options(keep_for=60).enqueue()
    assert (await must_get(app.backend, handle.id)).keep_for == 60
    handle = await app.enqueue("export", keep_for=0)
    assert (await must_get(app.backend, handle.id)).keep_for == 0


@pytest.mark.parametrize("bad", [-1, "1h", True, float("nan")])
async def test_a_bad_keep_for_is_refused_at_enqueue(app: Workhorse, bad: object) -> None:
    @task(app, queue="q")
    async def export() -> None: ...

    with pytest.raises(ConfigError, match="keep_for must be a number of seconds >= 0"):
        await export.enqueue(keep_for=bad)
    with pytest.raises(ConfigError, match="keep_for must be a number of seconds >= 0"):
        await app.run(export, keep_for=bad, timeout=RUN)
    with pytest.raises(ConfigError, match="keep_for must be a number of seconds >= 0"):
        task(app, name="other", keep_for=bad)(export.fn)
    assert await app.jobs() == []
