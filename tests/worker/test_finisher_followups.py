"""A flow step whose follow-ups the store rejects, written with its outcome by the finish
(``Outcome.followups``), is not lost: the finisher writes it as a retry instead, its
attempt refunded, and its rerun writes them (as when they could not be built)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.contract.support import claim_one, completed, enqueue_one, must_get, new
from workhorse.backends import Backend, Claim
from workhorse.job import REENQUEUE_DELAY, JobState
from workhorse.worker.finisher import Finisher


async def test_a_step_whose_followups_the_store_rejects_runs_again(backend: Backend) -> None:
    if not backend.url.startswith(("sqlite", "postgres")):
        pytest.skip("SQLite and PostgreSQL reject the follow-up in their write transaction")
    job_id = await enqueue_one(backend, new(queue="steps"))
    lease = await claim_one(backend, "steps")
    # A payload no store can take (the app layer encodes payloads; this one is not bytes).
    bad = dataclasses.replace(new(), data=object())  # type: ignore[arg-type]
    outcome = completed(1)
    outcome.followups = [(Claim(f"idx:{bad.id}", "m", unless="end"), bad)]
    finisher = Finisher(backend)
    assert await finisher.submit(lease, outcome) is True
    assert await finisher.drain(5) == 0
    assert outcome.kind == "retry" and outcome.refund and outcome.delay == REENQUEUE_DELAY
    assert outcome.followups == () and outcome.followups_claimed is None
    job = await must_get(backend, job_id)
    assert job.state is JobState.SCHEDULED
    assert job.attempts == 0  # refunded
    assert job.error is not None and "follow-ups" in job.error["message"]
    assert await backend.get(bad.id) is None
    assert await backend.kv_scan("idx:") == {}
