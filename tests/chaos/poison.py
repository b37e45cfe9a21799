"""Scenario 6: poison jobs among healthy ones.

Three phases on the same worker processes, healthy ``work`` jobs kept as a backlog all
along:

1. ``baseline``: healthy jobs only; their throughput is the reference.
2. ``process``: poison jobs arrive at a steady rate in the ``process`` runtime (raise,
   ``os._exit(1)``, segfault, out of memory under ``memory_limit``) plus inline ones that
   raise. Each must fail after its ``max_attempts`` with its own reason while the workers
   live on; the healthy throughput is reported as a ratio to the baseline.
3. ``crash``: inline poison that ``os._exit``s or segfaults, which takes its worker down,
   in a task with every option at its default. A supervisor (the harness) restarts dead
   workers; the lease of each crashed try expires and is reclaimed as a stall, and the job
   must fail for good after ``max_stalls`` reruns ("killed its worker N times"), never
   loop.

Tries are counted from the ledger (one ``start`` row per try that began) and from the
store's record: a job that raises uses at most ``max_attempts``, a crash job exactly
``max_stalls + 1`` tries, all stalls.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
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
)
from tests.chaos.tasks import POISON_RETRIES
from workhorse.job import MAX_STALLS

KEEP: dict[str, Any] = {"keep_completed": 10_000_000, "keep_failed": 10_000_000}
MAX_ATTEMPTS = POISON_RETRIES + 1
DEATHS = MAX_STALLS + 1  # the tries of a job that kills its worker every time
BACKLOG = 300  # healthy jobs kept queued: the workers are never short of work
# task, kind -> (error type, a part of its message): the reason each must end with
REASONS = {
    ("poison_process", "raise"): ("RuntimeError", "poison: always raises"),
    ("poison_process", "exit"): ("ChildDied", "exited with code 1"),
    ("poison_process", "segv"): ("ChildDied", "died of SIGSEGV"),
    ("poison_process", "oom"): ("MemoryError", ""),
    ("poison", "raise"): ("RuntimeError", "poison: always raises"),
    ("crash", "exit"): ("LeaseExpired", f"killed its worker {DEATHS} times"),
    ("crash", "segv"): ("LeaseExpired", f"killed its worker {DEATHS} times"),
}
CRASH = [("crash", "exit"), ("crash", "segv")]
STEADY = [k for k in REASONS if k not in CRASH]


async def poison(
    kind: str,
    workdir: Path,
    *,
    duration: float,
    seed: int,
    workers: int = 2,
    poison_per_s: float = 1.0,
    crash_jobs: int = 2,
    baseline_s: float | None = None,
) -> Report:
    """``duration`` is split between the baseline and the poison phase (at least 5 s
    each; ``baseline_s`` sets the baseline's apart); the crash phase lasts until its
    ``crash_jobs`` of each kind have failed."""
    rng = random.Random(seed)
    settings = Settings()
    phase_s = max(5.0, duration / 2)
    baseline_s = phase_s if baseline_s is None else baseline_s
    report = Report("poison", kind, seed, duration)
    url = store_url(kind, workdir)
    cluster = Cluster(url, workdir, settings)
    app = producer(url)
    healthy: list[str] = []
    poisoned: dict[str, tuple[str, str]] = {}  # job id -> (task, kind)
    windows: dict[str, tuple[float, float]] = {}
    deaths: list[int] = []  # exit codes of the workers that died

    async def feed() -> None:
        """Keep BACKLOG healthy jobs queued."""
        queued = len(healthy) - cluster.reader.count("finish")  # poison never finishes
        if queued < BACKLOG:
            data = [{"sleep": rng.uniform(0.02, 0.1)} for _ in range(BACKLOG)]
            ids = [h.id for h in await app.enqueue_many("work", data)]
            cluster.writer.write_many(ids, "enqueued")
            healthy.extend(ids)

    async def add_poison(task: str, what: str) -> None:
        handle = await app.enqueue(task, {"kind": what})
        cluster.writer.write_many([handle.id], "enqueued", f"{task}:{what}")
        poisoned[handle.id] = (task, what)

    def supervise() -> None:
        """Restart a dead worker at once, as systemd or Kubernetes would."""
        for p in list(procs):
            if p.poll() is not None:
                procs.remove(p)
                deaths.append(p.returncode)
                procs.append(cluster.spawn(**KEEP))

    try:
        await app.open()
        procs: list[subprocess.Popen[bytes]] = await cluster.start(workers, **KEEP)
        first = list(procs)
        await feed()
        await asyncio.sleep(1.0)  # warm-up: connections, the process pool

        # 1. baseline
        begin = time.time()
        while time.time() - begin < baseline_s:
            await feed()
            await asyncio.sleep(0.1)
        windows["baseline"] = (begin, time.time())

        # 2. poison in the process runtime (and inline raise) at a steady rate
        begin = time.time()
        for task, what in STEADY:  # one of each at once, then a steady rate
            await add_poison(task, what)
        owed, last, i = 0.0, begin, 0
        while time.time() - begin < phase_s:
            now = time.time()
            owed += (now - last) * poison_per_s
            last = now
            while owed >= 1:
                owed -= 1
                await add_poison(*STEADY[i % len(STEADY)])
                i += 1
            await feed()
            supervise()
            await asyncio.sleep(0.1)
        windows["process"] = (begin, time.time())
        # Let the last retries end first: a crash in phase 3 would take their attempts too.
        steady = list(poisoned)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await feed()
            supervise()
            if all(r is not None and r.finished for r in (await results(url, steady)).values()):
                break
            await asyncio.sleep(0.2)
        survived = all(p.poll() is None for p in first)
        deaths_before_crash = len(deaths)

        # 3. inline poison that kills its worker
        begin = time.time()
        crash_ids = []
        for task, what in CRASH * crash_jobs:
            await add_poison(task, what)
            crash_ids.append(next(reversed(poisoned)))
        deadline = time.monotonic() + 30 + DEATHS * 10 * settings.bound
        while time.monotonic() < deadline:
            await feed()
            supervise()
            records = await results(url, crash_ids)
            if all(r is not None and r.finished for r in records.values()):
                break
            await asyncio.sleep(0.2)
        windows["crash"] = (begin, time.time())

        # drain: every healthy job finished, every poison job failed for good
        await all_finished(cluster, healthy, 60)
        records = await poll(
            lambda: results(url, list(poisoned)),
            lambda r: all(j is not None and j.finished for j in r.values()),
            30,
            "every poison job finished in the store",
        )
    finally:
        await cluster.stop_all()
        await app.close()
    try:
        by_job = cluster.reader.by_job()
        finishes = [r for r in cluster.reader.rows("finish") if r.job != "-"]
        rate = {
            name: sum(1 for r in finishes if a <= r.at < b) / (b - a)
            for name, (a, b) in windows.items()
        }
        lost = sum(1 for j in healthy if not any(r.event == "finish" for r in by_job.get(j, [])))
        over = wrong = 0
        most = 0
        for job_id, (task, what) in poisoned.items():
            starts = [r for r in by_job.get(job_id, []) if r.event == "start"]
            record = records[job_id]
            if (task, what) in CRASH:
                over += len(starts) > DEATHS or record.attempts != 0
                continue
            attempts = max([len(starts), *(r.attempt for r in starts), record.attempts])
            most = max(most, attempts)
            if attempts > MAX_ATTEMPTS:
                over += 1
            want_type, want_text = REASONS[(task, what)]
            error = record.error or {}
            if (
                record.state != "failed"
                or error.get("type") != want_type
                or want_text not in error.get("message", "")
            ):
                wrong += 1
                report.failures.append(
                    f"{task} {what} {job_id}: {record.state}, {record.attempts} attempts, "
                    f"error {error.get('type')}: {error.get('message', '')[:120]!r}"
                )
        crash_failed = sum(
            1 for j in crash_ids if records[j].state == "failed" and records[j].stalls == DEATHS
        )
        f = report.figures
        f["healthy_jobs"] = len(healthy)
        f["poison_jobs"] = len(poisoned)
        f["max_attempts"] = MAX_ATTEMPTS
        f["crash_tries"] = DEATHS
        f["most_attempts_used"] = most
        f["over_max_attempts"] = over
        f["wrong_outcome"] = wrong
        f["lost"] = lost
        f["baseline_jobs_per_s"] = rate["baseline"]
        f["process_poison_jobs_per_s"] = rate["process"]
        f["throughput_ratio"] = rate["process"] / rate["baseline"] if rate["baseline"] else 0.0
        f["worker_deaths_process_phase"] = deaths_before_crash
        f["crash_jobs_failed_after_max"] = crash_failed
        f["worker_deaths_crash_phase"] = len(deaths) - deaths_before_crash
        f["crash_jobs_per_s"] = rate["crash"]
        report.check(over == 0, f"{over} poison job(s) used more than their budget")
        report.check(wrong == 0, f"{wrong} poison job(s) without their failure and reason")
        report.check(lost == 0, f"{lost} healthy job(s) lost")
        report.check(
            survived and deaths_before_crash == 0,
            f"a worker died of process-runtime poison ({deaths[:deaths_before_crash]})",
        )
        report.check(
            crash_failed == len(crash_ids),
            f"{len(crash_ids) - crash_failed} crash job(s) not failed after {DEATHS} deaths",
        )
        report.check(len(deaths) > deaths_before_crash, "no worker died of inline poison")
    finally:
        cluster.close()
        await drop_store(url)
    return report
