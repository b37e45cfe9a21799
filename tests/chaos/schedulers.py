"""Scenario 5: five workers (each one a scheduler) with the same every-second schedule,
SIGKILLed and restarted at random. No tick may fire twice (a duplicate) and none may be
missed: a scheduler killed between claiming a tick and enqueueing its job leaves a pending
claim that another takes over after a lease (src/workhorse/scheduler/ticker.py). A fired
tick's job may run again after a kill (at-least-once); that is counted, not failed.

The ``tick`` task writes a ledger row naming its job: its id carries the tick's time
(tick_job_id), its creation time on the store's clock gives the lag. The acceptance test
of issue 4 runs this on SQLite (tests/acceptance/test_schedules_limits.py); ``python -m
tests.chaos --scenario schedulers`` runs it on every store.
"""

from __future__ import annotations

import asyncio
import math
import random
import signal
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

from tests.chaos.harness import Cluster, Report, Settings, drop_store, store_url

SCHEDULERS = 5


async def schedulers(
    kind: str, workdir: Path, *, duration: float, seed: int, every: tuple[float, float] = (0.3, 1.5)
) -> Report:
    """A random live worker is SIGKILLed every U(``every``) s; a replacement starts at
    once, or half the time up to 1.5 s later."""
    rng = random.Random(seed)
    duration = max(duration, 5.0)
    settings = Settings(lease=2.0, concurrency=4)
    report = Report("schedulers", kind, seed, duration)
    url = store_url(kind, workdir)
    cluster = Cluster(url, workdir, settings)
    kills = 0
    try:
        await cluster.start(SCHEDULERS, cron=True)
        began = time.time()
        while time.time() - began < duration:
            await asyncio.sleep(rng.uniform(*every))
            live = cluster.live()
            cluster.signal(rng.choice(live), signal.SIGKILL, "kill")
            kills += 1
            if len(live) > 1 and rng.random() < 0.5:
                await asyncio.sleep(rng.uniform(0.0, 1.5))  # sometimes restart a bit later
            cluster.spawn(cron=True)
        chaos_end = time.time()
        await asyncio.sleep(settings.bound + 2.0)  # a killed worker's jobs run elsewhere
    finally:
        await cluster.stop_all()
    try:
        ticks = cluster.reader.rows("tick")
        runs = Counter(r.job for r in ticks)
        created = {r.job: float(r.info) for r in ticks}
        jobs_per_tick: dict[int, set[str]] = defaultdict(set)
        for job_id in created:
            # A tick's job id starts with the tick's time in milliseconds (tick_job_id): a
            # tick fired late, by a worker taking over a dead one's claim, names its own second.
            jobs_per_tick[int(job_id[:12], 16) // 1000].add(job_id)
        first = min(jobs_per_tick, default=math.floor(chaos_end))
        expected = range(first, math.floor(chaos_end) + 1)
        missed = [s for s in expected if not jobs_per_tick.get(s)]
        doubled = [s for s in expected if len(jobs_per_tick.get(s, ())) > 1]
        lag = [at - int(job_id[:12], 16) / 1000 for job_id, at in created.items()]
        f = report.figures
        f["workers_started"] = len(cluster.procs)
        f["kills"] = kills
        f["ticks_expected"] = len(expected)
        f["ticks_fired"] = len(expected) - len(missed)
        f["duplicate_ticks"] = len(doubled)
        f["missed_ticks"] = len(missed)
        f["reruns_after_kill"] = sum(n - 1 for n in runs.values())
        f["p50_enqueue_lag_ms"] = statistics.median(lag) * 1000 if lag else 0.0
        f["max_enqueue_lag_ms"] = max(lag, default=0.0) * 1000
        report.check(bool(ticks) and first <= began + 3, "the schedule did not start firing")
        report.check(not doubled, f"ticks fired more than once: {doubled}")
        report.check(not missed, f"ticks never fired: {missed} (epoch seconds)")
    finally:
        cluster.close()
        await drop_store(url)
    return report
