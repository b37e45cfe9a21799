"""Lost replies under real workers: two worker processes reach Redis through a proxy that
lets chosen script calls (claim, finish, renew, update ...) run and then resets their
connection before the reply comes back. Tasks keep every option at their default (no
retries), so a change applied twice or a batch left leased shows as a failed job."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from tests.chaos.harness import (
    Cluster,
    Report,
    Settings,
    all_finished,
    drop_store,
    producer,
    results,
    store_url,
)
from tests.chaos.proxy import Proxy
from workhorse.backends.redis import RedisBackend
from workhorse.job import JobState

# The calls a worker makes, in the order their replies are lost (round robin).
TARGETS = ("claim", "finish", "renew", "claim", "finish", "beat", "reclaim", "finish")
IDLE = ("reclaim", "beat")
DROPPED = "dropped, this worker no longer holds its lease"


async def _refs(url: str) -> dict[str, bytes]:
    """How the workers name each script in a call, as a whole RESP string: its SHA, or on
    a standalone Redis 7+ its function (one function's name begins another's)."""
    backend = RedisBackend(url)
    await backend.open()
    try:
        return {n: s.ref.encode() + b"\r\n" for n, s in backend._scripts.items()}
    finally:
        await backend.close()


async def lost_replies(kind: str, workdir: Path, *, losses: int = 8, jobs: int = 400) -> Report:
    """``jobs`` jobs in steady batches while ``losses`` replies are lost; every job must
    start once, finish once and end completed, and no worker may log a dropped outcome."""
    assert kind == "redis", "a lost reply is a Redis wire fault (see docs/reliability.md)"
    report = Report("lost", kind, 0, 0.0)
    url = store_url(kind, workdir)
    proxy = Proxy("127.0.0.1", 6379).start()
    refs = await _refs(url)
    cluster = Cluster(url, workdir, Settings())
    app = producer(url)
    enqueued: list[str] = []
    under_load = 0
    try:
        await app.open()
        procs = await cluster.start(2, url=url.replace(":6379/", f":{proxy.port}/", 1))
        started = time.monotonic()
        armed = 0
        for _ in range(0, jobs, 20):
            ids = [h.id for h in await app.enqueue_many("plain", [{"sleep": 0.05}] * 20)]
            cluster.writer.write_many(ids, "enqueued")
            enqueued += ids
            if armed < losses and not proxy.armed:
                proxy.lose(refs[TARGETS[armed % len(TARGETS)]])
                armed += 1
            await asyncio.sleep(0.1)
        under_load = proxy.lost
        # Once the jobs are done only the periodic calls go on: the rest is lost there.
        while proxy.lost < losses and time.monotonic() - started < 30:
            proxy.lose(refs[IDLE[proxy.lost % len(IDLE)]])
            await asyncio.sleep(1.0)
        with contextlib.suppress(TimeoutError):
            await all_finished(cluster, enqueued, 30)
        await asyncio.sleep(cluster.settings.bound)  # a late second run would show now
        report.check(all(p.poll() is None for p in procs), "a worker exited")
    finally:
        await cluster.stop_all()
        await app.close()
        proxy.close()
    try:
        by_job = cluster.reader.by_job()
        records = await results(url, enqueued)
        f = report.figures
        f["jobs"] = len(enqueued)
        f["lost_replies"] = proxy.lost
        f["lost_under_load"] = under_load
        f["not_once"] = sum(
            1
            for j in enqueued
            if [r.event for r in by_job.get(j, [])].count("start") != 1
            or [r.event for r in by_job.get(j, [])].count("finish") != 1
        )
        f["not_completed"] = sum(
            1 for j in enqueued if records[j] is None or records[j].state is not JobState.COMPLETED
        )
        f["dropped_logged"] = sum(cluster.log_count(p.pid, DROPPED) for p in cluster.procs)
        report.check(f["lost_replies"] == losses, f"only {proxy.lost} replies lost")
        report.check(f["not_once"] == 0, f"{f['not_once']} job(s) not run exactly once")
        report.check(f["not_completed"] == 0, f"{f['not_completed']} job(s) not completed")
        report.check(f["dropped_logged"] == 0, "a worker logged a dropped outcome")
    finally:
        cluster.close()
        await drop_store(url)
    return report
