"""The count rule of retention (``keep_completed`` / ``keep_failed``, ``purge(keep_last=)``):
each queue keeps its newest ``keep_last`` finished jobs of each state, and the count is
read and applied in one step, so jobs finishing while the sweep runs are neither deleted
nor make it delete one of the newest it read."""

from __future__ import annotations

import asyncio

from workhorse.backends import Backend
from workhorse.job import JobState

from .support import claim_one, completed, enqueue_one, new

DONE = {JobState.COMPLETED}
K = 3


async def finish_in(backend: Backend, queue: str, n: int) -> list[str]:
    """Finish ``n`` new jobs of ``queue`` one after the other; their ids, oldest first."""
    ids = []
    for _ in range(n):
        ids.append(await enqueue_one(backend, new(queue=queue)))
        await backend.finish([(await claim_one(backend, queue=queue), completed())])
        await asyncio.sleep(0.002)  # distinct finish times
    return ids


async def kept(backend: Backend, ids: list[str]) -> list[bool]:
    return [await backend.get(i) is not None for i in ids]


async def test_keep_last_counts_per_queue(backend: Backend) -> None:
    old = await finish_in(backend, "a", 4)
    young = await finish_in(backend, "b", 2)
    # Queue b's jobs are the newest of all, yet queue a still keeps its own newest K.
    assert await backend.purge(states=DONE, keep_last=K, retention=True) == 1
    assert await kept(backend, old) == [False, True, True, True]
    assert await kept(backend, young) == [True, True]
    assert await backend.purge(states=DONE, keep_last=1, queue="b") == 1
    assert await kept(backend, old + young) == [False, True, True, True, False, True]


async def test_jobs_finishing_during_sweeps_keep_each_queue_at_its_count(
    backend: Backend, peer: Backend
) -> None:
    """Sweeps run while another process finishes jobs in a queue that had none finished
    at the start: after each sweep every queue still has its newest K (or all it has)."""
    done: dict[str, list[str]] = {"a": await finish_in(backend, "a", K + 2), "b": []}
    await backend.enqueue([new(queue=q) for _ in range(40) for q in ("a", "b")])
    finishing = True

    async def finisher() -> None:
        nonlocal finishing
        for n in range(40):
            queue = "ab"[n % 3 != 0]  # mostly the queue that started with none
            lease = await claim_one(peer, queue=queue, worker="w2")
            # Listed before it finishes: a sweep between the finish and the listing counted
            # it among the queue's newest K, which the check then did not see.
            done[queue].append(lease.job_id)
            await peer.finish([(lease, completed())])
            await asyncio.sleep(0.001)
        finishing = False

    async def sweeper() -> None:
        while finishing:
            await backend.purge(states=DONE, keep_last=K, retention=True)
            # Nothing deletes while this looks: only what the sweep left is checked.
            for queue, ids in done.items():
                looked_at = list(ids)  # the finisher appends while kept() awaits
                survivors = await kept(backend, looked_at)
                assert sum(survivors) >= min(K, len(looked_at)), (queue, survivors)
                # What a queue lost is its oldest, never one newer than a survivor.
                assert survivors == sorted(survivors), (queue, survivors)
            await asyncio.sleep(0)

    await asyncio.gather(finisher(), sweeper())
    await backend.purge(states=DONE, keep_last=K, retention=True)
    for ids in done.values():
        assert await kept(backend, ids) == [False] * (len(ids) - K) + [True] * K
