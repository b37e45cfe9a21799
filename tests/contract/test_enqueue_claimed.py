"""enqueue_claimed: jobs written with a claim key, refused with it while another key is live
(a flow step's follow-ups: the run's index entry, refused once the run ended)."""

from __future__ import annotations

import asyncio
import dataclasses

from workhorse.backends import Backend, Claim
from workhorse.job import JobState

from .support import claim_one, completed, must_get, new


def keyed(job_id: str) -> Claim:
    return Claim(f"idx:{job_id}", "m", unless="end")


async def test_a_claimed_job_is_written_with_its_key(backend: Backend) -> None:
    a, b = new(), new(delay=60)
    out = await backend.enqueue_claimed([(keyed(a.id), a), (keyed(b.id), b)])
    assert [(won, r is not None and r.created) for won, r in out] == [(True, True)] * 2
    assert [r.state for _, r in out if r is not None] == [JobState.QUEUED, JobState.SCHEDULED]
    assert await backend.kv_scan("idx:") == {f"idx:{a.id}": "m", f"idx:{b.id}": "m"}
    assert (await must_get(backend, b.id)).state is JobState.SCHEDULED
    assert (await claim_one(backend)).job_id == a.id


async def test_a_claim_already_there_still_writes_a_missing_job(backend: Backend) -> None:
    # The writer that set the key died before its job: the next one writes it.
    a = new()
    assert await backend.set_if_absent(f"idx:{a.id}", "m")
    ((won, res),) = await backend.enqueue_claimed([(keyed(a.id), a)])
    assert won is False
    assert res is not None and res.created and res.id == a.id
    assert (await must_get(backend, a.id)).state is JobState.QUEUED


async def test_a_job_that_exists_is_not_written_again(backend: Backend) -> None:
    a = new(dedup_key="k")
    assert (await backend.enqueue_claimed([(keyed(a.id), a)]))[0][0] is True
    # Live: the same call again writes nothing.
    assert await backend.enqueue_claimed([(keyed(a.id), a)]) == [(False, None)]
    # Finished, its key gone: the key is claimed again, the job is not written again.
    lease = await claim_one(backend)
    assert await backend.finish([(lease, completed(7))]) == [True]
    assert await backend.kv_delete(f"idx:{a.id}")
    again = dataclasses.replace(a, data=b'"other"')
    ((won, _),) = await backend.enqueue_claimed([(keyed(a.id), again)])
    assert won is True
    job = await must_get(backend, a.id)  # answered as written or not: it stands as it was
    assert (job.state, job.result, job.data) == (JobState.COMPLETED, 7, {})


async def test_nothing_is_written_while_the_unless_key_is_live(
    backend: Backend, peer: Backend
) -> None:
    a, b = new(), new()
    assert await peer.set_if_absent("end", "cancelled")
    assert await backend.set_if_absent(f"idx:{b.id}", "m")
    out = await backend.enqueue_claimed([(keyed(a.id), a), (keyed(b.id), b)])
    assert out == [(False, None), (False, None)]
    assert await backend.kv_scan("idx:") == {f"idx:{b.id}": "m"}
    assert await backend.get(a.id) is None
    assert await backend.get(b.id) is None
    # Without an unless key the claim goes on.
    c = new()
    ((won, res),) = await backend.enqueue_claimed([(Claim(f"idx:{c.id}", "m"), c)])
    assert won is True and res is not None


async def test_concurrent_writers_of_one_job_claim_it_once_and_write_it_once(
    backend: Backend, peer: Backend
) -> None:
    jobs = [new() for _ in range(5)]
    jobs = [dataclasses.replace(j, dedup_key=f"flow:{j.id}") for j in jobs]
    calls = [b.enqueue_claimed([(keyed(j.id), j) for j in jobs]) for b in [backend, peer] * 4] + [
        backend.enqueue_claimed([(keyed(jobs[0].id), jobs[0])] * 3)
    ]
    results = await asyncio.gather(*calls)
    for i, j in enumerate(jobs):
        items = [r[i] for r in results[:-1]] + (list(results[-1]) if i == 0 else [])
        assert sum(won for won, _ in items) == 1, j.id
        # A store whose enqueue is idempotent per id (Redis) may answer a resend as
        # written: the store tells whether it was written once.
        assert any(res is not None for _, res in items), j.id
        queued = [e for e in await backend.job_events(j.id) if e.type == "job.queued"]
        assert len(queued) == 1, j.id
    counts = await backend.counts(["q"])
    assert counts["q"].get("queued") == 5
