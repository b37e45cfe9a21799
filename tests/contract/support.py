"""Helpers shared by the contract tests: job builders, outcomes and deadline polling.

Every backend keeps its own clock (Redis ``TIME``, Postgres ``now()``), so tests use
short real durations and poll with a deadline instead of trusting one fixed sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from workhorse import codec
from workhorse.backends import Backend
from workhorse.job import MAX_STALLS, Event, Job, Lease, NewJob, Outcome, new_job_id

T = TypeVar("T")

LONG = 30.0  # a lease that cannot expire during a test
SHORT = 0.2  # a lease a test lets expire
DEADLINE = 10.0  # the longest a poll waits on a loaded machine before the test fails


def new(
    task: str = "t",
    queue: str = "q",
    data: Any = None,
    *,
    priority: int = 0,
    delay: float = 0.0,
    at: float | None = None,
    max_attempts: int = 1,
    timeout: float | None = None,
    lease: float | None = None,
    dedup_key: str | None = None,
    max_stalls: int = MAX_STALLS,
) -> NewJob:
    """An enqueue request as the app layer would build it."""
    return NewJob(
        new_job_id(),
        task,
        queue,
        codec.dumps({} if data is None else data),
        priority,
        delay,
        at,
        max_attempts,
        timeout,
        lease,
        dedup_key,
        max_stalls=max_stalls,
    )


async def enqueue_one(backend: Backend, job: NewJob | None = None) -> str:
    (res,) = await backend.enqueue([job or new()])
    assert res.created
    return res.id


async def must_get(backend: Backend, job_id: str) -> Job:
    job = await backend.get(job_id)
    assert job is not None, f"job {job_id} is gone"
    return job


async def claim_one(
    backend: Backend, queue: str = "q", worker: str = "w1", lease: float = LONG
) -> Lease:
    leases = await backend.claim([queue], worker, 1, lease)
    assert len(leases) == 1, f"expected one claimable job in {queue!r}, got {leases}"
    return leases[0]


def completed(result: Any = None, logs: list[dict[str, Any]] | None = None) -> Outcome:
    return Outcome("completed", result=codec.dumps(result), logs=logs or [])


def failed(message: str = "boom", type_: str = "ValueError") -> Outcome:
    return Outcome("failed", error=error(message, type_))


def error(message: str = "boom", type_: str = "ValueError") -> dict[str, Any]:
    return {
        "type": type_,
        "message": message,
        "traceback": f'Traceback (most recent call last):\n  File "x.py", line 1\n{type_}: '
        f"{message}\n",
    }


async def eventually(
    probe: Callable[[], Awaitable[T]], what: str, timeout: float = DEADLINE, every: float = 0.02
) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(every)


async def reclaim(backend: Backend, job_id: str) -> None:
    """Wait for ``job_id``'s lease to expire and have it reclaimed."""

    async def probe() -> bool:
        return job_id in await backend.reclaim_expired()

    await eventually(probe, f"reclaim_expired() to return {job_id}")


async def settled_log(backend: Backend, job_id: str | None = None) -> list[Event]:
    """Every event written so far (of ``job_id`` if given), oldest first.

    A backend may show an event a moment after it was written (Postgres waits until no
    older transaction is in flight, so that a cursor never skips one). So a marker is
    published and awaited: once it shows, everything written before it shows too."""
    marker = new_job_id()
    await backend.publish([Event("test.marker", data={"marker": marker})])
    seen: list[Event] = []

    async def probe() -> bool:
        nonlocal seen
        seen = await backend.events(0, 100_000)
        return any(e.type == "test.marker" and e.data.get("marker") == marker for e in seen)

    await eventually(probe, "a published event to show in the log")
    return [e for e in seen if e.type != "test.marker" and (job_id is None or e.job_id == job_id)]


def line_flow(app: Any, steps: int) -> list[str]:
    """Flow "line": steps s1 -> s2 -> ... each adding one to its input; their names."""
    names = [f"s{i}" for i in range(1, steps + 1)]
    for i, name in enumerate(names):

        async def step(n: int) -> int:
            return n + 1

        options: dict[str, Any] = (
            {"entry": True} if i == 0 else {"subscribes": [f"step:{names[i - 1]}"]}
        )
        app.add_task(step, name=name, flow="line", **options)
    return names
