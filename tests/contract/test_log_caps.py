"""A job's log lines are capped per job, not per attempt: over all its attempts the store
keeps the newest ``max_log_lines`` lines within ``max_log_bytes``, and readers see one
first line saying how many older ones were dropped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from workhorse.backends import Backend
from workhorse.job import JobState, Outcome

from .support import claim_one, enqueue_one, must_get, new


def _lines(attempt: int, n: int, pad: int = 0) -> list[dict[str, Any]]:
    return [
        {"at": 1.0 + n, "level": "info", "message": f"a{attempt} l{i:04d}" + "x" * pad}
        for i in range(n)
    ]


def _dropped(line: dict[str, Any]) -> int:
    assert line["level"] == "warning" and "dropped" in line["message"], line
    return int(line["fields"]["dropped"])


@pytest.fixture
def caps(backend: Backend) -> Iterator[Backend]:
    lines, size = backend.max_log_lines, backend.max_log_bytes
    yield backend
    backend.max_log_lines, backend.max_log_bytes = lines, size


async def _run_three_attempts(backend: Backend, per_attempt: list[list[dict[str, Any]]]) -> str:
    job_id = await enqueue_one(backend, new(max_attempts=3))
    for attempt, logs in enumerate(per_attempt, 1):
        lease = await claim_one(backend)
        assert lease.attempts == attempt
        kind = "completed" if attempt == len(per_attempt) else "retry"
        assert await backend.finish([(lease, Outcome(kind, logs=logs))]) == [True]
    return job_id


async def test_a_retried_job_keeps_at_most_max_log_lines(backend: Backend) -> None:
    assert backend.max_log_lines == 1_000  # the default
    job_id = await _run_three_attempts(backend, [_lines(a, 800) for a in (1, 2, 3)])
    job = await must_get(backend, job_id)
    assert job.state is JobState.COMPLETED
    notice, kept = job.logs[0], job.logs[1:]
    assert len(kept) == 1_000
    assert _dropped(notice) == 3 * 800 - 1_000
    assert kept[-1]["message"] == "a3 l0799"  # the newest: the last attempt's last line
    assert kept[0]["message"] == "a2 l0600"  # and every line after the first kept one
    assert [line["message"] for line in kept[-800:]] == [f"a3 l{i:04d}" for i in range(800)]


async def test_a_retried_job_keeps_at_most_max_log_bytes(caps: Backend) -> None:
    caps.max_log_bytes = 20_000
    job_id = await _run_three_attempts(caps, [_lines(a, 100, pad=1_000) for a in (1, 2, 3)])
    job = await must_get(caps, job_id)
    notice, kept = job.logs[0], job.logs[1:]
    assert sum(len(orjson.dumps(line)) for line in kept) <= 20_000
    assert 15 <= len(kept) < 20  # about 1 KB each
    assert kept[-1]["message"].startswith("a3 l0099")
    assert _dropped(notice) == 300 - len(kept)


async def test_lines_written_with_progress_count_toward_the_cap(caps: Backend) -> None:
    caps.max_log_lines = 50
    job_id = await enqueue_one(caps)
    lease = await claim_one(caps)
    for n in range(10):
        batch = [{"at": 1.0, "level": "info", "message": f"u{n} l{i}"} for i in range(20)]
        # 3 lines the worker dropped itself (over its own bound) count with the store's.
        assert await caps.update(lease, n, batch, dropped=3)
    assert await caps.finish([(lease, Outcome("completed", logs_dropped=2))]) == [True]
    job = await must_get(caps, job_id)
    notice, kept = job.logs[0], job.logs[1:]
    assert len(kept) == 50
    assert kept[-1]["message"] == "u9 l19"
    assert _dropped(notice) == 200 - 50 + 10 * 3 + 2


async def test_a_job_under_the_caps_shows_no_notice(backend: Backend) -> None:
    job_id = await _run_three_attempts(backend, [_lines(a, 5) for a in (1, 2, 3)])
    job = await must_get(backend, job_id)
    assert [line["message"] for line in job.logs] == [
        f"a{a} l{i:04d}" for a in (1, 2, 3) for i in range(5)
    ]
