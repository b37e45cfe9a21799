"""A reply lost on the way back: the server ran the call, the client never heard, and its
connection sends the call again. Every state change is applied once and reported as it
was (docs/reliability.md, "A lost reply"). The client talks to Redis through a proxy that
resets the connection after the request went up and before its reply comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.proxy import Proxy
from tests.chaos.servers import PrivateRedis
from tests.conftest import backend_url
from tests.contract.support import (
    LONG,
    claim_one,
    completed,
    enqueue_one,
    failed,
    must_get,
    new,
    settled_log,
)
from workhorse.backends import Claim
from workhorse.backends.redis import RedisBackend
from workhorse.job import Event, JobState, Lease, Outcome, RunEnd


@dataclass
class Lossy:
    backend: RedisBackend  # through the proxy
    direct: RedisBackend  # straight to the server, to look
    proxy: Proxy

    def lose(self, script: str) -> None:
        """The next call of ``script`` runs, and its reply is lost."""
        # Its SHA or function name as a whole RESP string: one function's name begins
        # another's (the library's ..._claim and ..._claimed).
        self.proxy.lose(self.backend._scripts[script].ref.encode() + b"\r\n")

    def assert_lost(self, times: int = 1) -> None:
        assert self.proxy.lost == times, "the proxy did not lose the reply"


@pytest.fixture
async def lossy(tmp_path: Path) -> AsyncIterator[Lossy]:
    url = backend_url("redis", tmp_path)
    proxy = Proxy("127.0.0.1", 6379).start()
    backend = RedisBackend(url.replace(":6379/", f":{proxy.port}/", 1))
    direct = RedisBackend(url)
    await backend.open()
    await direct.open()
    try:
        yield Lossy(backend, direct, proxy)
    finally:
        await backend.close()
        await direct.drop()
        await direct.close()
        proxy.close()


def of(events: list[Event], kind: str, job_id: str | None = None) -> list[Event]:
    return [e for e in events if e.type == kind and (job_id is None or e.job_id == job_id)]


async def test_a_resent_enqueue_creates_the_job_once(lossy: Lossy) -> None:
    lossy.lose("enqueue")
    (res,) = await lossy.backend.enqueue([new(dedup_key="k")])
    lossy.assert_lost()
    assert res.created
    assert [j.id for j in await lossy.direct.query(queue="q")] == [res.id]
    assert len(of(await settled_log(lossy.direct), "job.queued")) == 1


async def test_a_resent_bulk_enqueue_creates_each_job_once(lossy: Lossy) -> None:
    # Three chunks written one by one as they are packed: the first one's reply is lost,
    # and every chunk goes again on a fresh connection.
    lossy.lose("enqueue")
    results = await lossy.backend.enqueue([new() for _ in range(600)])
    lossy.assert_lost()
    assert all(res.created and res.state is JobState.QUEUED for res in results)
    assert len({res.id for res in results}) == 600
    assert (await lossy.direct.counts(["q"]))["q"]["queued"] == 600
    assert len(of(await settled_log(lossy.direct), "job.queued")) == 600


async def test_a_resent_claim_returns_the_same_batch(lossy: Lossy) -> None:
    ids = {await enqueue_one(lossy.direct) for _ in range(3)}
    lossy.lose("claim")
    leases = await lossy.backend.claim(["q"], "w1", 10, LONG)
    lossy.assert_lost()
    assert {x.job_id for x in leases} == ids
    for lease in leases:
        assert lease.attempts == 1 and lease.data == b"{}" and lease.lease == LONG
    assert await lossy.backend.finish([(x, completed()) for x in leases]) == [True] * 3
    assert len(of(await settled_log(lossy.direct), "job.started")) == 3


async def test_a_resent_finish_reports_the_first_result(lossy: Lossy) -> None:
    a, b, c = [await enqueue_one(lossy.direct) for _ in range(3)]
    leases = {x.job_id: x for x in await lossy.direct.claim(["q"], "w1", 3, LONG)}
    assert await lossy.direct.finish([(leases[c], completed())]) == [True]  # not ours now
    lossy.lose("finish")
    items = [(leases[a], completed(1)), (leases[b], failed()), (leases[c], failed())]
    assert await lossy.backend.finish(items) == [True, True, False]
    lossy.assert_lost()
    assert (await must_get(lossy.direct, a)).state is JobState.COMPLETED
    assert (await must_get(lossy.direct, b)).state is JobState.FAILED
    assert (await must_get(lossy.direct, c)).state is JobState.COMPLETED
    events = await settled_log(lossy.direct)
    assert len(of(events, "job.completed", a)) == 1 and len(of(events, "job.failed", b)) == 1


async def test_a_resent_finish_of_a_whole_batch_reports_it_applied(lossy: Lossy) -> None:
    for _ in range(3):
        await enqueue_one(lossy.direct)
    leases = await lossy.direct.claim(["q"], "w1", 3, LONG)
    lossy.lose("finish")
    assert await lossy.backend.finish([(x, completed()) for x in leases]) == [True] * 3
    lossy.assert_lost()
    assert len(of(await settled_log(lossy.direct), "job.completed")) == 3


async def test_a_resent_finish_with_follow_ups_reports_their_first_answers(
    lossy: Lossy,
) -> None:
    # The answers decide whether a flow step hands its run off: a replay must not turn
    # "claimed and written" into "nothing new".
    step = await enqueue_one(lossy.direct, new(queue="steps"))
    lease = await claim_one(lossy.direct, "steps")
    b, c = new(), new(delay=60)
    outcome = completed(1)
    outcome.followups = [(Claim(f"idx:{j.id}", "m", unless="end"), j) for j in (b, c)]
    lossy.lose("finish")
    assert await lossy.backend.finish([(lease, outcome)]) == [True]
    lossy.assert_lost()
    assert outcome.followups_claimed is not None
    assert [(won, r.state if r else None) for won, r in outcome.followups_claimed] == [
        (True, JobState.QUEUED),
        (True, JobState.SCHEDULED),
    ]
    assert (await must_get(lossy.direct, step)).state is JobState.COMPLETED
    events = await settled_log(lossy.direct)
    assert len(of(events, "job.queued", b.id)) == 1 and len(of(events, "job.queued", c.id)) == 1


async def test_a_resent_finish_writes_a_steps_events_once(lossy: Lossy) -> None:
    # A flow step's own events ride on its finish (Outcome.events): a replay answers from
    # the first run and writes none of them again.
    step = await enqueue_one(lossy.direct, new(queue="steps"))
    lease = await claim_one(lossy.direct, "steps")
    data = {"run": "r1", "flow": "f", "step": "s", "attempt": 1}
    outcome = completed(1)
    outcome.events = [
        Event(t, step, "s", "steps", data, 1.0) for t in ("step.started", "step.completed")
    ]
    lossy.lose("finish")
    assert await lossy.backend.finish([(lease, outcome)]) == [True]
    lossy.assert_lost()
    events = await settled_log(lossy.direct)
    assert [e.type for e in events if e.job_id == step][-3:] == [
        "step.started",
        "step.completed",
        "job.completed",
    ]
    assert len(of(events, "step.started")) == 1 and len(of(events, "step.completed")) == 1
    assert [e.type for e in await lossy.direct.run_events("r1")] == [
        "step.started",
        "step.completed",
    ]


async def _run_ending_step(lossy: Lossy) -> tuple[str, Lease, Outcome]:
    """A leased step whose completed outcome carries the end of run r1 (flow f)."""
    step = await enqueue_one(lossy.direct, new(queue="steps"))
    lease = await claim_one(lossy.direct, "steps")
    outcome = completed(1)
    event = Event("flow.completed", None, None, None, {"run": "r1", "flow": "f"}, 1.0)
    outcome.end = RunEnd("end:r1", "done", "live:r1", "f", event)
    return step, lease, outcome


async def test_a_resent_finish_ends_its_run_once_and_reports_it_ended(lossy: Lossy) -> None:
    # A run's end rides on its last step's finish (Outcome.end): a replay answers "ended
    # here" from the first run, so the engine neither settles it again nor misses it.
    await lossy.direct.kv_set("live:r1", "f")
    step, lease, outcome = await _run_ending_step(lossy)
    lossy.lose("finish")
    assert await lossy.backend.finish([(lease, outcome)]) == [True]
    lossy.assert_lost()
    assert outcome.ended == (True, True)
    assert (await must_get(lossy.direct, step)).state is JobState.COMPLETED
    assert await lossy.direct.kv_get("end:r1") == "done"
    assert await lossy.direct.kv_get("live:r1") is None
    assert len(of(await settled_log(lossy.direct), "flow.completed")) == 1


async def test_a_resent_finish_of_an_ended_run_reports_it_ended_before(lossy: Lossy) -> None:
    # Every item applied and no end written: the reply is not kept, the replay rebuilds it.
    await lossy.direct.kv_set("live:r1", "f")
    await lossy.direct.kv_set("end:r1", "cancelled")
    _, lease, outcome = await _run_ending_step(lossy)
    lossy.lose("finish")
    assert await lossy.backend.finish([(lease, outcome)]) == [True]
    lossy.assert_lost()
    assert outcome.ended == (False, False)
    assert await lossy.direct.kv_get("end:r1") == "cancelled"
    assert await lossy.direct.kv_get("live:r1") == "f"


async def test_a_resent_enqueue_claimed_reports_its_first_answers(lossy: Lossy) -> None:
    a = new()
    lossy.lose("claimed")
    ((won, res),) = await lossy.backend.enqueue_claimed([(Claim(f"idx:{a.id}", "m"), a)])
    lossy.assert_lost()
    assert won is True and res is not None and res.created
    assert len(of(await settled_log(lossy.direct), "job.queued", a.id)) == 1


async def test_a_resent_start_writes_its_event_count_and_job_once(lossy: Lossy) -> None:
    # A run's start (enqueue_claimed_with) is one script call: its lost reply resends it.
    a = new()
    lossy.lose("start")
    ((won, res),) = await lossy.backend.enqueue_claimed_with(
        [(Claim(f"idx:{a.id}", "m"), a)],
        {"run:r1": "record", "live:r1": "f"},
        [Event("flow.started", data={"run": "r1"})],
        [("n:r1", 1, None)],
    )
    lossy.assert_lost()
    assert won is True and res is not None and res.created
    log = await settled_log(lossy.direct)
    assert (len(of(log, "flow.started")), len(of(log, "job.queued", a.id))) == (1, 1)
    assert await lossy.direct.kv_get("run:r1") == "record"
    assert await lossy.direct.counter_add("n:r1", 0) == 1


async def test_a_resent_counter_counts_once(lossy: Lossy) -> None:
    lossy.lose("counter")
    assert await lossy.backend.counter_add("c", 1) == 1
    lossy.assert_lost()
    assert await lossy.direct.counter_add("c", 0) == 1


async def test_a_resent_counter_batch_counts_once(lossy: Lossy) -> None:
    lossy.lose("counter")
    items = [("a", 1, None), ("b", 2, 30.0), ("a", 3, None)]
    assert await lossy.backend.counter_add_many(items) == [1, 2, 4]
    lossy.assert_lost()
    assert await lossy.direct.counter_add_many([("a", 0, None), ("b", 0, None)]) == [4, 2]


@pytest.mark.parametrize("ttl", [None, 30.0])
async def test_a_resent_set_if_absent_reports_it_ours(lossy: Lossy, ttl: float | None) -> None:
    lossy.proxy.lose(b"cron:tick")
    assert await lossy.backend.set_if_absent("cron:tick", "mine", ttl=ttl) is True
    lossy.assert_lost()
    assert await lossy.direct.kv_get("cron:tick") == "mine"
    assert await lossy.direct.set_if_absent("cron:tick", "theirs", ttl=ttl) is False


async def test_a_resent_kv_delete_reports_it_deleted(lossy: Lossy) -> None:
    await lossy.direct.kv_set("slot", "mine")
    lossy.lose("kv")
    assert await lossy.backend.kv_delete("slot", "mine") is True
    lossy.assert_lost()
    assert await lossy.direct.kv_get("slot") is None


async def test_a_resent_renew_keeps_the_lease(lossy: Lossy) -> None:
    await enqueue_one(lossy.direct)
    lease = await claim_one(lossy.direct)
    lossy.lose("renew")
    result = await lossy.backend.renew([lease])
    lossy.assert_lost()
    assert not result.lost and not result.cancel
    assert await lossy.direct.finish([(lease, completed())]) == [True]


async def test_a_resent_update_logs_and_reports_once(lossy: Lossy) -> None:
    job_id = await enqueue_one(lossy.direct)
    lease = await claim_one(lossy.direct)
    lossy.lose("update")
    line = {"at": 1.0, "level": "info", "message": "half way"}
    assert await lossy.backend.update(lease, progress=50, logs=[line]) is True
    lossy.assert_lost()
    job = await must_get(lossy.direct, job_id)
    assert job.progress == 50 and job.logs == [line]
    assert len(of(await settled_log(lossy.direct), "job.progress", job_id)) == 1


async def test_a_resent_retry_reports_it_retried(lossy: Lossy) -> None:
    job_id = await enqueue_one(lossy.direct)
    await lossy.direct.finish([(await claim_one(lossy.direct), failed())])
    lossy.lose("retry")
    assert await lossy.backend.retry(job_id) is True
    lossy.assert_lost()
    assert (await must_get(lossy.direct, job_id)).state is JobState.QUEUED
    assert len(of(await settled_log(lossy.direct), "job.queued", job_id)) == 2


async def test_a_resent_publish_logs_the_event_once(lossy: Lossy) -> None:
    lossy.lose("publish")
    await lossy.backend.publish([Event("app.ping", data={"n": 1})])
    lossy.assert_lost()
    assert len(of(await settled_log(lossy.direct), "app.ping")) == 1


async def test_calls_in_flight_beside_a_lost_one_apply_once(lossy: Lossy) -> None:
    # Every reply on the connection is lost with it: the other callers' counters are sent
    # again too, and each still counts once.
    lossy.lose("counter")
    got = await asyncio.gather(*(lossy.backend.counter_add(f"n{i}", 1) for i in range(20)))
    lossy.assert_lost()
    assert got == [1] * 20
    assert [await lossy.direct.counter_add(f"n{i}", 0) for i in range(20)] == [1] * 20


# Busies the server for about 1.5 s: the calls sent meanwhile wait past their timeout.
_BUSY = """
local t0 = redis.call('TIME')
while true do
  local t = redis.call('TIME')
  if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 1500000 then return 1 end
end
"""


@pytest.mark.timeout(60)
async def test_a_timed_out_call_leaves_the_others_applied_once() -> None:
    # One call's timeout drops the shared connection; the commands behind it reach the
    # server twice (the old connection's copy runs once the server is free, the resent
    # copy on the new one), in either order, and each still counts once.
    server = PrivateRedis(persist=False)
    server.start()
    backend = RedisBackend(f"{server.url}?prefix=t&call_timeout=1")
    blocker = RedisBackend(f"{server.url}?prefix=t")
    try:
        await backend.open()
        await blocker.open()
        busy = asyncio.create_task(blocker._conn().call("EVAL", _BUSY, 0, timeout=10))
        await asyncio.sleep(0.2)

        async def add(i: int) -> int:
            await asyncio.sleep(0.02 * i)  # the first times out while the rest still wait
            return await backend.counter_add(f"n{i}", 1)

        got = await asyncio.gather(*(add(i) for i in range(20)), return_exceptions=True)
        await busy
        timed_out = [i for i, g in enumerate(got) if isinstance(g, TimeoutError)]
        assert 0 < len(timed_out) < 20, got
        for i, g in enumerate(got):
            now = await blocker.counter_add(f"n{i}", 0)
            assert now == 1 or (i in timed_out and now == 0), (i, g, now)
            assert i in timed_out or g == 1, (i, g)
    finally:
        await backend.close()
        await blocker.close()
        server.cleanup()
