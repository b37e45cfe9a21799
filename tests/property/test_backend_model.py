"""Scenario 9: random sequences of contract calls, each applied to a backend and to the
reference model in ``model.py``; every answer and every job's state is compared after
each step. Diverging traces must be 0.

Clock moves. memory and sqlite take a ``clock=``, so they run on a ``FakeClock``: delays,
retry delays and leases are short, ``advance`` moves time by hand, and lease expiry,
promotion of delayed jobs and ``reclaim_expired`` are checked exactly. Redis and
PostgreSQL decide time on the server (``TIME``, ``now()``), which a test cannot move, so
there the model is time-free: a delay is 0 or far beyond the test (the job stays
scheduled), leases are long, and one rule, ``crash``, claims with a 20 ms lease as a
worker that then dies, sleeps 60 ms for real and reclaims; every other lease is 60 s
and cannot expire during a run. Real sleeps elsewhere would make the traces depend on
the machine's load; this way each trace has one right answer (up to the ties the
contract leaves open, see ``model.py``).

A fresh store per example (a new SQLite file, Redis prefix or PostgreSQL schema) keeps
examples apart; Hypothesis runs derandomized and without its example database so CI
sees the same sequences every time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import BACKENDS, backend_url
from tests.property.model import CANCELLED, COMPLETED, FAILED, INF, Expected, Model
from workhorse import codec
from workhorse.backends import Backend, backend_from_url
from workhorse.backends.memory import MemoryBackend
from workhorse.backends.sqlite import SQLiteBackend
from workhorse.job import JobState, Lease, NewJob, Outcome, new_job_id
from workhorse.testing import FakeClock

T = TypeVar("T")

QUEUES = ("qa", "qb")
KEYS = ("k1", "k2")
FAR = 100_000.0  # a delay no test outlives: the job stays scheduled
LONG = 60.0  # a lease that cannot expire during a run on a real clock
CRASH_LEASE = 0.02
CRASH_SLEEP = 0.06
FAKE_CLOCK_KINDS = ("memory", "sqlite")

# (examples, steps) per backend: every rule runs many times, CI time stays bounded.
BUDGET = {"memory": (150, 50), "sqlite": (60, 40), "redis": (30, 30), "postgres": (20, 30)}
# Shrinking a failure can take minutes, past the per-test timeout; CI reports the trace
# as found. WORKHORSE_PROPERTY_SHRINK=1 shrinks it to the shortest one.
SHRINK = os.environ.get("WORKHORSE_PROPERTY_SHRINK", "") == "1"


class BackendMachine(RuleBasedStateMachine):
    kind: ClassVar[str] = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="wh-prop-"))
        self.fake = self.kind in FAKE_CLOCK_KINDS
        self.clock = FakeClock()
        self.backend = self._make_backend()
        self.run(self.backend.open())
        # On a fake clock the model's time is the clock; on a real one it is a step
        # counter: only the order of events matters there, never their distance.
        self.model = Model(now=self.clock() if self.fake else 0.0)
        self.leases: list[Lease] = []  # every lease ever handed out, stale ones too
        self.purged: list[str] = []
        self.steps = 0

    def _make_backend(self) -> Backend:
        if self.kind == "memory":
            return MemoryBackend(clock=self.clock)
        if self.kind == "sqlite":
            return SQLiteBackend(f"sqlite:///{self.tmp / 'wh.db'}", clock=self.clock)
        return backend_from_url(backend_url(self.kind, self.tmp))

    def run(self, coro: Awaitable[T]) -> T:
        async def call() -> T:
            return await coro

        return self.loop.run_until_complete(call())

    def teardown(self) -> None:
        try:
            drop = getattr(self.backend, "drop", None)
            if drop is not None:
                self.run(drop())
            self.run(self.backend.close())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- time ------------------------------------------------------------------------
    def tick(self) -> None:
        """A new step: on a real clock the server's time has moved on since the last."""
        self.steps += 1
        if not self.fake:
            self.model.now = float(self.steps)

    def delays(self) -> st.SearchStrategy[float]:
        if self.fake:
            return st.sampled_from([0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 10.0, FAR])
        return st.sampled_from([0.0, 0.0, 0.0, 0.0, 0.0, FAR])

    def span(self, lease: float) -> float:
        """The model's expiry span of a lease: real-clock leases never expire in a run."""
        return lease if self.fake else INF

    # -- rules -----------------------------------------------------------------------
    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        """A few jobs to begin with, so that claims have a choice to make."""
        self._enqueue(data, data.draw(st.integers(3, 8), label="batch"))

    @rule(data=st.data())
    def enqueue(self, data: st.DataObject) -> None:
        self._enqueue(data, data.draw(st.integers(1, 3), label="batch"))

    def _enqueue(self, data: st.DataObject, batch: int) -> None:
        self.tick()
        news: list[NewJob] = []
        expected: list[Expected] = []
        self.model.begin_batch()
        for _ in range(batch):
            new = NewJob(
                new_job_id(),
                "t",
                data.draw(st.sampled_from(QUEUES), label="queue"),
                b"",
                data.draw(st.integers(-2, 2), label="priority"),
                data.draw(self.delays(), label="delay"),
                None,
                data.draw(st.integers(1, 3), label="max_attempts"),
                None,
                None,
                data.draw(st.one_of(st.none(), st.sampled_from(KEYS)), label="dedup_key"),
                data.draw(st.booleans(), label="replace"),
                max_stalls=data.draw(st.integers(0, 2), label="max_stalls"),
            )
            value = {"n": self.steps, "i": len(news)}
            new.data = codec.dumps(value)
            news.append(new)
            expected.append(
                self.model.enqueue(
                    new.id,
                    new.queue,
                    value,
                    new.priority,
                    new.delay,
                    new.max_attempts,
                    new.dedup_key,
                    new.replace,
                    new.max_stalls,
                )
            )
        self.model.end_batch()
        results = self.run(self.backend.enqueue(news))
        got = [(r.id, r.created, r.state.value, r.replaced) for r in results]
        want = [(e.id, e.created, e.state, e.replaced) for e in expected]
        for k, (g, e) in enumerate(zip(got, want, strict=True)):
            # Open in the contract: a plain duplicate may report its live job's state as of
            # the end of the batch (PostgreSQL answers duplicates after the batch's
            # replacements) instead of as of its own turn.
            if not e[1] and not e[3] and g[2] == self.model.public_state(self.model.jobs[e[0]]):
                want[k] = (e[0], e[1], g[2], e[3])
        assert got == want, f"enqueue answers differ:\n got  {got}\n want {want}"

    def _claim(self, queues: list[str], limit: int, lease: float, worker: str) -> list[Lease]:
        leases = self.run(self.backend.claim(queues, worker, limit, lease))
        ids = [x.job_id for x in leases]
        problem = self.model.check_claim(queues, limit, ids)
        assert problem is None, f"claim({queues}, limit={limit}): {problem}"
        for x in leases:
            job = self.model.apply_claim(x.job_id, x.token, self.span(lease))
            assert (x.attempts, x.max_attempts, x.queue, x.task) == (
                job.attempts,
                job.max_attempts,
                job.queue,
                "t",
            ), f"lease {x} vs model {job}"
            assert codec.loads(x.data) == job.data
            assert x.lease == lease
        self.leases.extend(leases)
        return leases

    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        self.tick()
        queues = data.draw(st.sampled_from([["qa"], ["qb"], ["qa", "qb"], ["qb", "qa"]]))
        limit = data.draw(st.integers(1, 4), label="limit")
        lease = data.draw(st.sampled_from([1.0, 2.0, 5.0, 30.0]) if self.fake else st.just(LONG))
        self._claim(queues, limit, lease, "w1")

    def _pick_leases(self, data: st.DataObject, most: int) -> list[Lease]:
        """Distinct jobs' leases, mostly live ones, sometimes stale."""
        live = [x for x in self.leases if self.model.owned(x.job_id, x.token)]
        fresh = bool(live) and data.draw(st.integers(0, 3), label="stale?") > 0
        pool = live if fresh else self.leases
        picked = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=most))
        seen: set[str] = set()
        out = []
        for x in picked:
            if x.job_id not in seen:
                seen.add(x.job_id)
                out.append(x)
        return out

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        self.tick()
        picked = self._pick_leases(data, 4)
        got = self.run(self.backend.renew(picked))
        lost, cancel = self.model.renew((x.job_id, x.token, self.span(x.lease)) for x in picked)
        assert (set(got.lost), set(got.cancel)) == (lost, cancel), (
            f"renew: got lost={set(got.lost)} cancel={set(got.cancel)}, "
            f"want lost={lost} cancel={cancel}"
        )

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        self.tick()
        picked = self._pick_leases(data, 3)
        items: list[tuple[Lease, Outcome]] = []
        plan = []
        for x in picked:
            kind = data.draw(st.sampled_from([COMPLETED, FAILED, "retry", "retry", CANCELLED]))
            delay = data.draw(self.delays()) if kind == "retry" else 0.0
            refund = kind == "retry" and data.draw(st.booleans(), label="refund")
            result = {"done": x.job_id[-6:]} if kind == COMPLETED else None
            err = None if kind == COMPLETED else {"type": "E", "message": kind, "traceback": ""}
            outcome = Outcome(
                kind,  # type: ignore[arg-type]
                result=codec.dumps(result) if kind == COMPLETED else None,
                error=err,
                delay=delay,
                refund=refund,
            )
            items.append((x, outcome))
            plan.append((x.job_id, x.token, kind, delay, refund, result))
        got = self.run(self.backend.finish(items))
        want = self.model.finish(plan)
        assert got == want, f"finish accepted {got}, model {want} for {plan}"

    @precondition(lambda self: self.model.jobs or self.purged)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.tick()
        active = [i for i, j in self.model.jobs.items() if j.state == "active"]
        pool = [*self.model.jobs, *self.purged, new_job_id()]
        use_active: bool = bool(active) and data.draw(st.booleans(), label="active?")
        if use_active:
            pool = active
        job_id = data.draw(st.sampled_from(pool), label="job")
        got = self.run(self.backend.cancel(job_id))
        want = self.model.cancel(job_id)
        assert (None if got is None else got.value) == want, f"cancel({job_id})"

    @precondition(lambda self: self.model.jobs)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        self.tick()
        ended = [i for i, j in self.model.jobs.items() if j.state in (FAILED, CANCELLED)]
        pool = [*self.model.jobs, *self.purged]
        use_ended = bool(ended) and data.draw(st.integers(0, 3), label="ended?") > 0
        if use_ended:
            pool = ended
        job_id = data.draw(st.sampled_from(pool), label="job")
        got = self.run(self.backend.retry(job_id))
        assert got == self.model.retry(job_id), f"retry({job_id})"

    @rule(data=st.data())
    def purge(self, data: st.DataObject) -> None:
        self.tick()
        states = data.draw(
            st.sets(st.sampled_from([COMPLETED, FAILED, CANCELLED]), min_size=1), label="states"
        )
        ages = [None, 0.0, 2.0, 8.0] if self.fake else [None, 0.0]
        older_than = data.draw(st.sampled_from(ages), label="older_than")
        keep_last = data.draw(st.sampled_from([None, 0, 1, 2]), label="keep_last")
        queue = data.draw(st.sampled_from([None, *QUEUES]), label="queue")
        sure, ties = self.model.purge_plan(states, older_than, keep_last, queue)
        n = self.run(
            self.backend.purge(
                states={JobState(s) for s in states},
                older_than=older_than,
                keep_last=keep_last,
                queue=queue,
            )
        )
        assert n == len(sure) + sum(k for _, k in ties), (
            f"purge({states}, older_than={older_than}, keep_last={keep_last}, queue={queue}) "
            f"deleted {n}, model: {len(sure)} + ties {[(len(g), k) for g, k in ties]}"
        )
        gone = set(sure)
        for group, k in ties:
            # Which of a tie is kept is open; how many is not.
            left = {i for i in group if self.run(self.backend.get(i)) is None}
            assert len(left) == k, f"purge removed {len(left)} of a tie of {len(group)}, not {k}"
            gone |= left
        self.model.forget(gone)
        self.purged.extend(gone)

    @rule(queue=st.sampled_from(QUEUES), pause=st.booleans())
    def pause(self, queue: str, pause: bool) -> None:
        self.tick()
        if pause:
            self.run(self.backend.pause(queue))
            self.model.paused.add(queue)
        else:
            self.run(self.backend.resume(queue))
            self.model.paused.discard(queue)
        assert self.run(self.backend.paused()) == self.model.paused

    @precondition(lambda self: self.fake)
    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 5.0, 11.0]), sweep=st.booleans())
    def advance(self, seconds: float, sweep: bool) -> None:
        """Time passes; with ``sweep``, a worker then reclaims what expired."""
        self.clock.advance(seconds)
        self.model.now = self.clock()
        if sweep:
            self.tick()
            self._reclaim()

    @precondition(lambda self: self.fake)
    @rule()
    def reclaim(self) -> None:
        self.tick()
        self._reclaim()

    def _reclaim(self) -> None:
        got = set(self.run(self.backend.reclaim_expired()))
        want = self.model.reclaim()
        assert got == want, f"reclaim_expired: got {got}, model {want}"

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """A worker claims, dies, its leases expire and any worker reclaims them."""
        self.tick()
        queue = data.draw(st.sampled_from(QUEUES), label="queue")
        leases = self._claim([queue], data.draw(st.integers(1, 2)), CRASH_LEASE, "dead")
        if self.fake:
            self.clock.advance(CRASH_SLEEP)
            self.model.now = self.clock()
        else:
            for x in leases:
                self.model.jobs[x.job_id].expires_at = self.model.now  # due after the sleep
            time.sleep(CRASH_SLEEP)
            self.tick()
        self._reclaim()

    # -- the comparison after every step ---------------------------------------------
    @invariant()
    def same_jobs(self) -> None:
        jobs = self.run(self.backend.query(limit=100_000))
        got = {
            j.id: (j.state.value, j.attempts, j.stalls, j.priority, j.max_attempts, j.queue)
            for j in jobs
        }
        m = self.model
        want = {
            i: (m.public_state(j), j.attempts, j.stalls, j.priority, j.max_attempts, j.queue)
            for i, j in m.jobs.items()
        }
        if got != want:
            diff = {
                i: (got.get(i), want.get(i))
                for i in set(got) | set(want)
                if got.get(i) != want.get(i)
            }
            raise AssertionError(f"after step {self.steps}, jobs differ (got, model): {diff}")
        for j in jobs:
            mj = m.jobs[j.id]
            assert j.data == mj.data, f"job {j.id}: data {j.data} vs model {mj.data}"
            assert j.dedup_key == mj.dedup_key
            if mj.state == COMPLETED:
                assert j.result == mj.result
        counts = self.run(self.backend.counts(list(QUEUES)))
        for q in QUEUES:
            row = {str(s): n for s, n in counts[q].items() if n}
            mine: dict[str, int] = {}
            for mj in m.jobs.values():
                if mj.queue == q:
                    mine[m.public_state(mj)] = mine.get(m.public_state(mj), 0) + 1
            assert row == mine, f"counts({q}): {row} vs model {mine}"


def _machine(kind: str) -> type[BackendMachine]:
    return type(f"{kind.title()}Machine", (BackendMachine,), {"kind": kind})


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis", "postgres"])
def test_backend_matches_the_model(kind: str, tmp_path: Path) -> None:
    if kind not in BACKENDS:
        pytest.skip(f"{kind} not in WORKHORSE_TEST_BACKENDS")
    backend_url(kind, tmp_path)  # a missing server skips here (fails under CI=true)
    examples, steps = BUDGET[kind]
    phases = [Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])]
    run_state_machine_as_test(
        _machine(kind),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            phases=phases,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
