"""finish with a flow run's end (``Capabilities.finish_ends``): a written completed
outcome's ``end`` sets the run's end marker unless present; if set, deletes its live
entry while it holds the unmarked name and, if deleted, logs the end's event after the
outcome's; ``outcome.ended`` answers both. A refused outcome writes none of it."""

from __future__ import annotations

import dataclasses

import pytest

from workhorse.backends import Backend
from workhorse.job import Event, JobState, Lease, Outcome, RunEnd

from .support import claim_one, completed, enqueue_one, failed, must_get, new, settled_log

RUN = "r1"


@pytest.fixture(autouse=True)
def _capable(backend: Backend) -> None:
    if not backend.capabilities.finish_ends:
        pytest.skip(f"{backend.url.split('://')[0]}:// ends a run apart from its finish")


def run_end(run: str = RUN, name: str = "f", entry: str | None = None) -> RunEnd:
    event = Event("flow.completed", None, None, None, {"run": run, "flow": name}, 1_000_000.0)
    return RunEnd(f"end:{run}", '{"state":"completed"}', f"live:{run}", name, event, entry)


async def step(backend: Backend, queue: str = "steps") -> Lease:
    await enqueue_one(backend, new(queue=queue))
    return await claim_one(backend, queue)


def ending(end: RunEnd, events: list[Event] | None = None) -> Outcome:
    outcome = completed(1)
    outcome.end = end
    outcome.events = events or []
    return outcome


async def test_the_end_sets_its_marker_deletes_the_live_entry_and_logs_its_event(
    backend: Backend,
) -> None:
    await backend.kv_set("live:r1", "f")
    lease = await step(backend)
    own = Event("step.completed", lease.job_id, "s", "steps", {"run": RUN, "flow": "f"}, 5.0)
    outcome = ending(run_end(), [own])
    assert await backend.finish([(lease, outcome)]) == [True]
    assert outcome.ended == (True, True)
    assert await backend.kv_get("end:r1") == '{"state":"completed"}'
    assert await backend.kv_get("live:r1") is None
    log = await settled_log(backend)
    ours = [e.type for e in log if e.job_id == lease.job_id or e.data.get("run") == RUN]
    assert ours[-3:] == ["step.completed", "job.completed", "flow.completed"]
    got = await backend.run_events(RUN)
    assert [(e.type, e.at, e.data) for e in got] == [
        ("step.completed", 5.0, {"run": RUN, "flow": "f"}),
        ("flow.completed", 1_000_000.0, {"run": RUN, "flow": "f"}),
    ]


async def test_a_marked_live_entry_stays_and_no_event_is_logged(backend: Backend) -> None:
    await backend.kv_set("live:r1", "f state")  # a step kept state: the caller clears it
    lease = await step(backend)
    outcome = ending(run_end())
    assert await backend.finish([(lease, outcome)]) == [True]
    assert outcome.ended == (True, False)
    assert await backend.kv_get("end:r1") == '{"state":"completed"}'
    assert await backend.kv_get("live:r1") == "f state"
    assert [e for e in await settled_log(backend) if e.type == "flow.completed"] == []


async def test_an_ended_run_is_left_as_it_ended(backend: Backend) -> None:
    await backend.kv_set("live:r1", "f")
    await backend.kv_set("end:r1", '{"state":"cancelled"}')
    lease = await step(backend)
    outcome = ending(run_end())
    assert await backend.finish([(lease, outcome)]) == [True]
    assert outcome.ended == (False, False)
    assert (await must_get(backend, lease.job_id)).state is JobState.COMPLETED
    assert await backend.kv_get("end:r1") == '{"state":"cancelled"}'
    assert await backend.kv_get("live:r1") == "f"
    assert [e for e in await settled_log(backend) if e.type == "flow.completed"] == []


async def test_a_refused_outcome_ends_nothing(backend: Backend) -> None:
    await backend.kv_set("live:r1", "f")
    lease = await step(backend)
    outcome = ending(run_end())
    stale = dataclasses.replace(lease, token=lease.token + "x")  # reclaimed by another worker
    assert await backend.finish([(stale, outcome)]) == [False]
    assert outcome.ended is None
    assert (await must_get(backend, lease.job_id)).state is JobState.ACTIVE
    assert await backend.kv_get("end:r1") is None
    assert await backend.kv_get("live:r1") == "f"
    assert [e for e in await settled_log(backend) if e.type == "flow.completed"] == []


async def test_a_batch_ends_the_runs_of_the_outcomes_it_completes(backend: Backend) -> None:
    for run in ("a", "b", "c", "d"):
        await backend.kv_set(f"live:{run}", "f")
    done, lost, down, plain, once, twice = [await step(backend) for _ in range(6)]
    refused = ending(run_end("b"))
    stale = dataclasses.replace(lost, token=lost.token + "x")
    not_done = failed()
    not_done.end = run_end("c")  # only a completion ends its run
    first, second, again = ending(run_end("a")), ending(run_end("d")), ending(run_end("d"))
    items = [(done, first), (stale, refused), (down, not_done), (plain, completed(2))]
    items += [(once, second), (twice, again)]  # two finishes of one run: the first ends it
    assert await backend.finish(items) == [True, False, True, True, True, True]
    assert (first.ended, refused.ended, not_done.ended) == ((True, True), None, None)
    assert (second.ended, again.ended) == ((True, True), (False, False))
    assert [await backend.kv_get(f"live:{run}") for run in "abcd"] == [None, "f", "f", None]
    marks = [await backend.kv_get(f"end:{run}") for run in "abcd"]
    assert [m is not None for m in marks] == [True, False, False, True]
    log = await settled_log(backend)
    assert sorted(e.data["run"] for e in log if e.type == "flow.completed") == ["a", "d"]
    position = {(e.job_id, e.type): n for n, e in enumerate(log)}
    flows = {e.data["run"]: n for n, e in enumerate(log) if e.type == "flow.completed"}
    assert position[(done.job_id, "job.completed")] < flows["a"]
    assert position[(once.job_id, "job.completed")] < flows["d"]
    assert (await must_get(backend, plain.job_id)).result == 2


async def test_the_end_files_its_retention_entry_only_when_it_sets_its_marker(
    backend: Backend,
) -> None:
    await backend.kv_set("end:b", '{"state":"cancelled"}')  # b ended before
    ends = {run: run_end(run, entry=f"expire:{run}") for run in "abc"}
    leases = [await step(backend) for _ in "abc"]
    stale = dataclasses.replace(leases[2], token=leases[2].token + "x")
    outcomes = {run: ending(end) for run, end in ends.items()}
    items = [(leases[0], outcomes["a"]), (leases[1], outcomes["b"]), (stale, outcomes["c"])]
    assert await backend.finish(items) == [True, True, False]
    assert [outcomes[r].ended for r in "abc"] == [(True, False), (False, False), None]
    assert await backend.kv_scan("expire:") == {"expire:a": '{"state":"completed"}'}
