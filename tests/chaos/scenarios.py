"""The scenarios of issue 6 that this suite runs: 1, 2, 3, 4 and 8 here, 5 in
schedulers.py, 6 in poison.py, 7 in soak.py. Each takes a backend kind, a work dir, a
duration and a seed, runs real worker processes, injects its faults, and returns a Report
whose figures are counted from the ledger. ``SCENARIOS`` names them all for
``python -m tests.chaos``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import sqlite3
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tests.chaos.harness import (
    Cluster,
    Report,
    Settings,
    all_finished,
    drop_store,
    poll,
    producer,
    results,
    store_url,
    wait_for,
)
from tests.chaos.ledger import Row
from tests.chaos.poison import poison
from tests.chaos.proxy import Proxy
from tests.chaos.schedulers import schedulers
from tests.chaos.servers import PrivatePostgres, PrivateRedis
from tests.chaos.soak import soak
from workhorse.worker.renewal import SILENT_LEASES

SLACK = 1.5  # process scheduling on a loaded 2-core machine, on top of the stated bound
DROPPED = "dropped, this worker no longer holds its lease"
# Retention must not purge the records the checks read.
KEEP: dict[str, Any] = {"keep_completed": 10_000_000}


def _starts(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.event == "start"]


# -- 1. random SIGKILL ---------------------------------------------------------------------
async def kill(
    kind: str,
    workdir: Path,
    *,
    duration: float,
    seed: int,
    rate: float = 100.0,
    workers: int = 4,
    kill_every: tuple[float, float] = (2.0, 10.0),
    task: str = "work",
) -> Report:
    """Jobs of ``task`` at a steady ``rate`` for ``duration`` s on ``workers`` processes; a
    random one is SIGKILLed every U(kill_every) s and a replacement started at once."""
    rng = random.Random(seed)
    settings = Settings()
    report = Report("kill" if task == "work" else "kill_defaults", kind, seed, duration)
    url = store_url(kind, workdir)
    cluster = Cluster(url, workdir, settings)
    app = producer(url)
    enqueued: list[str] = []
    try:
        await app.open()
        await cluster.start(workers, **KEEP)
        started = time.monotonic()
        next_kill = started + rng.uniform(*kill_every)
        owed = 0.0
        last = started
        while (now := time.monotonic()) - started < duration:
            owed += (now - last) * rate
            last = now
            n = int(owed)
            if n:
                owed -= n
                data = [{"sleep": rng.uniform(0.0, 0.2)} for _ in range(n)]
                ids = [h.id for h in await app.enqueue_many(task, data)]
                cluster.writer.write_many(ids, "enqueued")
                enqueued += ids
            if now >= next_kill:
                ready = {r.pid for r in cluster.reader.rows("ready")}
                victims = [p for p in cluster.live() if p.pid in ready]
                # A worker that holds a job, when one does: on a loaded machine a random
                # pick can find only idle ones, and the scenario is about jobs in flight.
                busy = _running_pids(cluster.reader)
                victims = [p for p in victims if p.pid in busy] or victims
                if victims:
                    cluster.signal(rng.choice(victims), signal.SIGKILL, "kill")
                    cluster.spawn(**KEEP)  # the supervisor restarts it
                next_kill = now + rng.uniform(*kill_every)
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        with contextlib.suppress(TimeoutError):
            await all_finished(cluster, enqueued, 30 + settings.bound)
        drained = time.monotonic() - started
    finally:
        await cluster.stop_all()
        await app.close()
    try:
        by_job = cluster.reader.by_job()
        killed = {r.pid: r.at for r in cluster.reader.rows("kill")}
        lost = dups = unexplained = overlaps = in_flight = 0
        recoveries: list[float] = []
        for job_id in enqueued:
            rows = by_job.get(job_id, [])
            if not any(r.event == "finish" for r in rows):
                lost += 1
            starts = _starts(rows)
            dups += max(0, len(starts) - 1)
            for r in starts:
                finished_here = any(x.event == "finish" and x.pid == r.pid for x in rows)
                if r.pid in killed and r.at < killed[r.pid] and not finished_here:
                    in_flight += 1
            for prev, nxt in itertools.pairwise(starts):
                k = killed.get(prev.pid)
                if k is None or k < prev.at:
                    unexplained += 1  # ran again though its worker was never killed
                elif nxt.at < k:
                    overlaps += 1  # ran again while the first run's worker still lived
                else:
                    recoveries.append(nxt.at - k)
        f = report.figures
        f["jobs"] = len(enqueued)
        f["kills"] = len(killed)
        f["lost"] = lost
        f["duplicates"] = dups
        f["in_flight_at_kills"] = in_flight
        f["unexplained_duplicates"] = unexplained
        f["overlapping_runs"] = overlaps
        f["max_recovery_s"] = max(recoveries, default=0.0)
        f["p50_recovery_s"] = statistics.median(recoveries) if recoveries else 0.0
        f["bound_s"] = settings.bound
        f["jobs_per_s"] = len(enqueued) / drained if drained else 0.0
        f["drain_after_s"] = drained - elapsed
        report.check(lost == 0, f"{lost} job(s) lost (no finish in the ledger)")
        report.check(unexplained == 0, f"{unexplained} duplicate run(s) with no kill to explain")
        report.check(overlaps == 0, f"{overlaps} rerun(s) started before the kill")
        report.check(
            f["max_recovery_s"] <= settings.bound + SLACK,
            f"longest recovery {f['max_recovery_s']:.2f}s > bound {settings.bound}s + {SLACK}s",
        )
        report.check(len(killed) > 0, "no kill happened: run longer")
    finally:
        cluster.close()
        await drop_store(url)
    return report


async def kill_defaults(kind: str, workdir: Path, **options: Any) -> Report:
    """``kill`` with jobs of a task that keeps every option at its default (retries=0)."""
    return await kill(kind, workdir, task="plain", **options)


# -- 2. SIGSTOP past the lease -------------------------------------------------------------
async def stop(kind: str, workdir: Path, *, duration: float, seed: int, jobs: int = 5) -> Report:
    """Rounds: worker A runs ``jobs`` jobs and is SIGSTOPped past its lease; B reruns and
    finishes them; A gets SIGCONT and tries to finish: every such finish must be refused.
    A and B swap roles each round."""
    settings = Settings(reclaim_interval=0.3)
    report = Report("stop", kind, seed, duration)
    url = store_url(kind, workdir)
    cluster = Cluster(url, workdir, settings)
    app = producer(url)
    rounds = stale = refused = wrong = 0
    notice: list[float] = []
    try:
        await app.open()
        a, b = await cluster.start(2, **KEEP)
        started = time.monotonic()
        while rounds == 0 or time.monotonic() - started < duration:
            rounds += 1
            got = await _stop_round(cluster, app, url, a, b, jobs)
            stale, refused, wrong = stale + got[0], refused + got[1], wrong + got[2]
            notice.append(got[3])
            a, b = b, a
    finally:
        await cluster.stop_all()
        await app.close()
    try:
        f = report.figures
        f["rounds"] = rounds
        f["jobs"] = rounds * jobs
        f["stale_finishes_accepted"] = stale
        f["stale_finishes_refused"] = refused
        f["wrong_records"] = wrong
        f["max_s_to_refuse_after_cont"] = max(notice, default=0.0)
        report.check(stale == 0, f"{stale} stale finish(es) accepted")
        report.check(
            wrong == 0, f"{wrong} job(s) without the rerun's result, 1 attempt and 1 stall"
        )
        report.check(refused == rounds * jobs, f"{refused} of {rounds * jobs} refusals logged")
    finally:
        cluster.close()
        await drop_store(url)
    return report


async def _stop_round(
    cluster: Cluster,
    app: Any,
    url: str,
    a: subprocess.Popen[bytes],
    b: subprocess.Popen[bytes],
    jobs: int,
) -> tuple[int, int, int, float]:
    """One round of scenario 2; returns (stale accepted, refused, wrong records, seconds
    from SIGCONT until A had logged every refusal)."""
    cluster.freeze(b)  # so that A takes every job
    ids = [h.id for h in await app.enqueue_many("work", [{"sleep": 1.0}] * jobs)]
    cluster.writer.write_many(ids, "enqueued")

    def by(event: str, pid: int) -> int:
        rows = cluster.reader.rows(event)
        return len({r.job for r in rows if r.pid == pid and r.job in ids})

    await wait_for(lambda: by("start", a.pid) == jobs, 20, "A started every job")
    cluster.freeze(a)
    cluster.signal(b, signal.SIGCONT, "cont")
    await wait_for(lambda: by("finish", b.pid) == jobs, 30, "B reran every job")
    await poll(
        lambda: results(url, ids),
        lambda r: all(j is not None and j.state == "completed" for j in r.values()),
        15,
        "the store holds every job completed",
    )
    before = cluster.log_count(a.pid, DROPPED)
    cont = cluster.signal(a, signal.SIGCONT, "cont")
    await wait_for(lambda: by("finish", a.pid) == jobs, 15, "A's stale runs ended")
    await wait_for(
        lambda: cluster.log_count(a.pid, DROPPED) - before >= jobs,
        15,
        "A logged each of its outcomes as dropped",
    )
    notice = time.time() - cont
    refused = cluster.log_count(a.pid, DROPPED) - before
    stale = wrong = 0
    for job in (await results(url, ids)).values():
        result = job.result or {}
        if result.get("pid") == a.pid:
            stale += 1
        elif result.get("pid") != b.pid or (job.attempts, job.stalls) != (1, 1):
            wrong += 1
    return stale, refused, wrong, notice


# -- 3. a handler that blocks its event loop -----------------------------------------------
async def block(kind: str, workdir: Path, *, duration: float, seed: int) -> Report:
    """Three one-slot workers; rounds of two jobs that block their worker's event loop for
    several leases, though less than a hung loop's (SILENT_LEASES). The third worker is idle
    and would take any lease that expires."""
    settings = Settings(concurrency=1, reclaim_interval=0.3)
    blocked = (SILENT_LEASES - 1) * settings.lease
    report = Report("block", kind, seed, duration)
    url = store_url(kind, workdir)
    cluster = Cluster(url, workdir, settings)
    app = producer(url)
    ids: list[str] = []
    rounds = 0
    try:
        await app.open()
        await cluster.start(3, **KEEP)
        started = time.monotonic()
        while rounds == 0 or time.monotonic() - started < duration:
            rounds += 1
            new = [h.id for h in await app.enqueue_many("block", [{"block": blocked}] * 2)]
            cluster.writer.write_many(new, "enqueued")
            ids += new
            await all_finished(cluster, ids, 30)
            with contextlib.suppress(TimeoutError):
                await poll(
                    lambda new=new: results(url, new),  # type: ignore[misc]
                    lambda r: all(j is not None and j.finished for j in r.values()),
                    10,
                    "the store holds the round's jobs finished",
                )
            await asyncio.sleep(settings.lease)  # a late rerun would show up meanwhile
        records = await results(url, ids)
    finally:
        await cluster.stop_all()
        await app.close()
    try:
        by_job = cluster.reader.by_job()
        overlaps = stale = reruns = unfinished = 0
        for job_id in ids:
            rows = by_job.get(job_id, [])
            starts = _starts(rows)
            reruns += max(0, len(starts) - 1)
            for prev, nxt in itertools.pairwise(starts):
                ends = [r.at for r in rows if r.event == "finish" and r.pid == prev.pid]
                if not ends or nxt.at < min(ends):
                    overlaps += 1
            record = records[job_id]
            if record is None or record.state != "completed":
                unfinished += 1  # every attempt lost its lease and had its outcome refused
                continue
            result = record.result or {}
            if starts and (result.get("pid"), result.get("attempt")) != (
                starts[-1].pid,
                starts[-1].attempt,
            ):
                stale += 1  # the store kept a result from an attempt that lost its lease
        f = report.figures
        f["rounds"] = rounds
        f["jobs"] = len(ids)
        f["block_s"] = blocked
        f["reruns"] = reruns
        f["overlapping_runs"] = overlaps
        f["stale_successes"] = stale
        f["not_completed"] = unfinished
        report.check(overlaps == 0, f"{overlaps} overlapping run(s)")
        report.check(unfinished == 0, f"{unfinished} job(s) never completed in the store")
        report.check(stale == 0, f"{stale} stale success(es) stored")
        report.check(reruns == 0, f"{reruns} rerun(s): the lease was not kept")
    finally:
        cluster.close()
        await drop_store(url)
    return report


def pids_of(procs: list[subprocess.Popen[bytes]]) -> set[int]:
    return {p.pid for p in procs}


# -- 4. server restarts and cut connections ------------------------------------------------
CALL_TIMEOUT = 3  # postgres: seconds before a statement with no answer is given up
FAULTS = {
    "sqlite": ("lock",),
    "redis": ("cut", "stall", "restart", "blackhole"),
    "postgres": ("cut", "stall", "restart", "blackhole"),
}


async def outage(
    kind: str,
    workdir: Path,
    *,
    duration: float,
    seed: int,
    faults: tuple[str, ...] | None = None,
    fault_s: float = 3.0,
    resume_limit: float = 20.0,
    persist: bool = True,
) -> Report:
    """Three workers behind a TCP proxy (the producer talks to the server directly), jobs
    at a steady rate. Each fault lasts ``fault_s``, then heals; every worker must claim a
    job again within ``resume_limit`` s of the heal, without being restarted."""
    rng = random.Random(seed)
    faults = faults or FAULTS[kind]
    report = Report("outage", kind, seed, duration)
    settings = Settings(concurrency=4)
    server: PrivateRedis | PrivatePostgres | None = None
    proxy: Proxy | None = None
    if kind == "redis":
        server = PrivateRedis(persist=persist)  # persist=False: a restart loses every job
    elif kind == "postgres":
        server = PrivatePostgres()
    url = worker_url = store_url(kind, workdir)
    if server is not None:
        server.start()
        proxy = Proxy("127.0.0.1", server.port).start()
        url = store_url(kind, workdir, base=server.url)
        if kind == "postgres":
            url += f"&call_timeout={CALL_TIMEOUT}"  # how soon a half-open link is given up
        worker_url = url.replace(f":{server.port}/", f":{proxy.port}/", 1)
    cluster = Cluster(url, workdir, settings)
    app = producer(url)
    enqueued: list[str] = []
    resume: dict[str, list[float]] = {}
    restarts: list[float] = []  # when each server restart began
    stopping = asyncio.Event()
    enqueue_errors = 0

    async def produce() -> None:
        nonlocal enqueue_errors
        while not stopping.is_set():
            try:
                data = [{"sleep": rng.uniform(0.2, 0.6)} for _ in range(2)]
                ids = [h.id for h in await app.enqueue_many("work", data)]
            except Exception:
                enqueue_errors += 1  # the server is down for the producer too
                await asyncio.sleep(0.2)
                continue
            cluster.writer.write_many(ids, "enqueued")
            enqueued.extend(ids)
            await asyncio.sleep(0.1)  # about 20 jobs/s: every worker is needed

    try:
        await _open_retrying(app)
        procs = await cluster.start(3, url=worker_url, **KEEP)
        feeder = asyncio.create_task(produce())
        started = time.monotonic()
        i = 0
        try:
            while i < len(faults) or time.monotonic() - started < duration:
                fault = faults[i % len(faults)]
                i += 1
                if i == 1:  # steady state: every worker runs jobs, not a fixed 2 s
                    await wait_for(
                        lambda: {r.pid for r in cluster.reader.rows("start")} >= pids_of(procs),
                        30,
                        "every worker running jobs before the first fault",
                    )
                    await asyncio.sleep(0.5)
                else:
                    await asyncio.sleep(2.0)  # steady state after the last heal
                at = cluster.writer.fault(fault, -1)
                if fault == "restart":
                    restarts.append(at)
                await _inject(fault, fault_s, url, server, proxy)
                healed = cluster.writer.fault("heal", -1, fault)
                pids = [p.pid for p in procs]

                def claimed_since(
                    healed: float = healed, pids: list[int] = pids
                ) -> dict[int, float]:
                    rows = cluster.reader.rows("start")
                    first: dict[int, float] = {}
                    for r in rows:
                        if r.at >= healed and r.pid in pids and r.pid not in first:
                            first[r.pid] = r.at
                    return first

                with contextlib.suppress(TimeoutError):
                    await wait_for(
                        lambda: len(claimed_since()) == len(procs),
                        resume_limit,
                        f"every worker claims again after {fault}",
                    )
                first = claimed_since()
                idle = [pid for pid in pids if pid not in first]
                took = max((first[p] - healed for p in first), default=resume_limit)
                resume.setdefault(fault, []).append(resume_limit if idle else took)
                report.check(not idle, f"after {fault}: worker(s) {idle} idle {resume_limit}s")
                report.check(
                    all(p.poll() is None for p in procs), f"a worker exited during {fault}"
                )
        finally:
            stopping.set()
            await feeder
        with contextlib.suppress(TimeoutError):
            await all_finished(cluster, enqueued, 60)
    finally:
        await cluster.stop_all()
        await app.close()
        if proxy is not None:
            proxy.close()
    try:
        by_job = cluster.reader.by_job()
        lost = sum(1 for j in enqueued if not any(r.event == "finish" for r in by_job.get(j, [])))
        dups = sum(max(0, len(_starts(by_job.get(j, []))) - 1) for j in enqueued)
        f = report.figures
        f["jobs"] = len(enqueued)
        for fault, spans in resume.items():
            f[f"{fault}_heal_to_claim_s"] = max(spans)
        f["lost"] = lost
        f["duplicates"] = dups
        f["producer_retries"] = enqueue_errors
        report.check(lost == 0, f"{lost} acknowledged job(s) lost")
        if restarts:
            # Jobs the server held (queued or active) when it went down: with AOF they come
            # back with it and finish; without persistence they would be lost.
            kept = _in_store(by_job, enqueued, restarts)
            f["in_store_at_restart"] = kept
            report.check(kept > 0, "no job was in the store at a restart: nothing to keep")
    finally:
        cluster.close()
        if server is None:
            await drop_store(url)
        else:
            server.cleanup()
    return report


def _in_store(by_job: dict[str, list[Row]], ids: list[str], moments: list[float]) -> int:
    """Jobs enqueued but not yet finished at each of ``moments``, summed."""
    held = 0
    for job_id in ids:
        rows = by_job.get(job_id, [])
        enq = min((r.at for r in rows if r.event == "enqueued"), default=None)
        fin = min((r.at for r in rows if r.event == "finish"), default=float("inf"))
        held += sum(1 for t in moments if enq is not None and enq < t < fin)
    return held


async def _open_retrying(app: Any) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            await app.open()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _inject(
    fault: str,
    seconds: float,
    url: str,
    server: PrivateRedis | PrivatePostgres | None,
    proxy: Proxy | None,
) -> None:
    if fault == "lock":
        # Another process holds SQLite's write lock (a long migration, a backup): every
        # write waits, then the lock goes away.
        await asyncio.to_thread(_hold_sqlite_lock, url.removeprefix("sqlite:///"), seconds)
        return
    assert server is not None and proxy is not None
    if fault == "restart":
        proxy.cut()  # connections die with the server
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(server.start)
        proxy.heal()
        return
    {"cut": proxy.cut, "stall": proxy.stall, "blackhole": proxy.blackhole}[fault]()
    await asyncio.sleep(seconds)
    proxy.heal()


def _hold_sqlite_lock(path: str, seconds: float) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


# -- 8. the claim race ---------------------------------------------------------------------
async def race(
    kind: str,
    workdir: Path,
    *,
    duration: float,
    seed: int,
    rounds: int = 100,
    procs: int = 8,
    slots: int = 10,
) -> Report:
    """``procs`` processes with ``slots`` slots each; each round enqueues one job per slot
    at once and waits for them all. Leases outlast the run, so any second start of a job
    is a double claim."""
    settings = Settings(lease=120.0, reclaim_interval=5.0, concurrency=slots)
    report = Report("race", kind, seed, duration)
    url = store_url(kind, workdir)
    cluster = Cluster(url, workdir, settings)
    app = producer(url)
    ids: list[str] = []
    done = 0
    try:
        await app.open()
        await cluster.start(procs, **KEEP)
        started = time.monotonic()
        while done < rounds or time.monotonic() - started < duration:
            new = [h.id for h in await app.enqueue_many("work", [{}] * (procs * slots))]
            cluster.writer.write_many(new, "enqueued")
            ids += new
            await all_finished(cluster, ids, 30)
            done += 1
        elapsed = time.monotonic() - started
    finally:
        await cluster.stop_all()
        await app.close()
    try:
        starts = Counter(r.job for r in cluster.reader.rows("start"))
        double = sum(1 for j in ids if starts[j] > 1)
        never = sum(1 for j in ids if starts[j] == 0)
        claimers = len({r.pid for r in cluster.reader.rows("start")})
        f = report.figures
        f["rounds"] = done
        f["jobs"] = len(ids)
        f["double_claims"] = double
        f["never_claimed"] = never
        f["processes_claiming"] = claimers
        f["claims_per_s"] = len(ids) / elapsed if elapsed else 0.0
        report.check(double == 0, f"{double} job(s) claimed twice")
        report.check(never == 0, f"{never} job(s) never claimed")
    finally:
        cluster.close()
        await drop_store(url)
    return report


SCENARIOS: dict[str, Callable[..., Coroutine[Any, Any, Report]]] = {
    "kill": kill,
    "kill_defaults": kill_defaults,
    "stop": stop,
    "block": block,
    "outage": outage,
    "race": race,
    "schedulers": schedulers,
    "poison": poison,
    "soak": soak,
}


def _running_pids(reader: Any) -> set[int]:
    """Workers with a job started and not yet finished, from the ledger."""
    running: dict[tuple[str, int], int] = {}
    for r in reader.rows():
        if r.event == "start":
            running[(r.job, r.attempt)] = r.pid
        elif r.event == "finish":
            running.pop((r.job, r.attempt), None)
    return set(running.values())
