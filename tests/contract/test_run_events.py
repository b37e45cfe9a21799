"""A flow run's events read by run (``run_events``): the events published with that run,
in log order, paged by the log's cursor, whatever other runs wrote around them."""

from __future__ import annotations

from workhorse.backends import Backend
from workhorse.job import Event

from .support import eventually, settled_log


def _run_event(type_: str, run: str, n: int) -> Event:
    return Event(type_, None, None, None, {"run": run, "flow": "f", "n": n})


async def _settled(backend: Backend, run: str, count: int) -> list[Event]:
    """The run's events once ``count`` show (PostgreSQL shows a commit a moment later)."""
    got: list[Event] = []

    async def probe() -> bool:
        nonlocal got
        got = await backend.run_events(run, 0, 10_000)
        return len(got) >= count

    await eventually(probe, f"{count} events of run {run}")
    return got


async def test_a_runs_events_in_order_without_other_runs_or_jobs(
    backend: Backend, peer: Backend
) -> None:
    await backend.publish(
        [
            _run_event("flow.started", "run1", 0),
            _run_event("flow.started", "run2", 0),
            Event("step.started", "rjob", "s", "q", {"run": "run1", "flow": "f", "n": 1}),
            Event("user.created", data={"email": "a@b.c"}),
        ]
    )
    await peer.publish([_run_event("flow.completed", "run1", 2), _run_event("x", "run2", 1)])
    got = await _settled(peer, "run1", 3)
    assert [(e.type, e.data["n"]) for e in got] == [
        ("flow.started", 0),
        ("step.started", 1),
        ("flow.completed", 2),
    ]
    assert (got[1].job_id, got[1].task, got[1].queue) == ("rjob", "s", "q")
    # The same events, under the same ids, as the whole log holds them.
    log = [e for e in await settled_log(backend) if e.data.get("run") == "run1"]
    assert [(e.id, e.type, e.data) for e in log] == [(e.id, e.type, e.data) for e in got]
    assert await backend.run_events("run3") == []


async def test_a_runs_events_page_by_cursor_past_other_runs_events(backend: Backend) -> None:
    await backend.publish([_run_event("step.completed", "early", n) for n in range(3)])
    for chunk in range(3):  # other runs write far more after them
        await backend.publish([_run_event("step.completed", f"o{chunk}", n) for n in range(700)])
    await backend.publish([_run_event("flow.completed", "early", 3)])
    got = await _settled(backend, "early", 4)
    assert [e.data["n"] for e in got] == [0, 1, 2, 3]
    first = await backend.run_events("early", 0, 2)
    rest = await backend.run_events("early", first[-1].id, 10)
    assert [e.data["n"] for e in first + rest] == [0, 1, 2, 3]
    assert await backend.run_events("early", rest[-1].id) == []


async def test_every_store_reads_a_run_by_its_own_index(backend: Backend) -> None:
    # The contract's default walks the whole log; each store keeps events by run instead.
    assert type(backend).run_events is not Backend.run_events
