"""Scenario 7: a soak at a steady rate with maintenance running.

Workers run jobs at a steady ``rate`` (a few retried once, a few in the ``process``
runtime) while reclaim sweeps every ``reclaim_interval`` and retention keeps the store
small: the workers' own (``keep_completed``/``keep_failed``, every 60 s) and a
``purge(keep_last=...)`` every few seconds from outside, as a cron'd ``workhorse purge``
would. Every second the harness samples, per worker process, its resident memory and open
file descriptors (``/proc/<pid>``), and the server's count of connections: Redis runs as
a private server (``INFO clients``), PostgreSQL connections carry an ``application_name``
of their own (``pg_stat_activity``).

After a warm-up nothing may grow: the floor of file descriptors and of connections (the
lowest count of the last third of the run against the first) within a small slack; memory
is reported as growth per 10,000 jobs. On SQLite no ``database is locked`` may reach a
user: not the producer, not a worker's log.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.harness import (
    POSTGRES_URL,
    Cluster,
    Report,
    Settings,
    all_finished,
    drop_store,
    producer,
    store_url,
)
from tests.chaos.servers import PrivateRedis

KEEP_LAST = 1_000  # finished jobs kept per state, by the workers and the purge
PURGE_EVERY = 5.0
FD_SLACK = 4  # a socket being replaced, the process pool's pipes in a turn-over
CONN_SLACK = 2
# SQLite's own words, and the backend's once it gives up waiting (lock_timeout)
LOCKED = ("database is locked", "stayed locked")
MIB = 1 << 20


@dataclass
class Sample:
    at: float
    rss: dict[int, int]  # pid -> bytes
    fds: dict[int, int]
    finished: dict[int, int]  # pid -> jobs it finished so far (from the ledger)
    conns: int | None


@dataclass
class Samples:
    rows: list[Sample] = field(default_factory=list)

    def after(self, t: float) -> list[Sample]:
        return [s for s in self.rows if s.at >= t]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Connections:
    """The server's own count of the run's connections (None on SQLite)."""

    def __init__(self, kind: str, redis: PrivateRedis | None, app_name: str) -> None:
        self.kind, self.redis, self.app_name = kind, redis, app_name
        self.conn: Any = None

    async def count(self) -> int | None:
        if self.kind == "redis":
            assert self.redis is not None
            return self.redis.clients() - 1  # not this probe's own
        if self.kind == "postgres":
            import psycopg

            if self.conn is None:
                self.conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
            cur = await self.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (self.app_name,),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0
        return None

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


async def soak(
    kind: str,
    workdir: Path,
    *,
    duration: float,
    seed: int,
    rate: float = 100.0,
    workers: int = 2,
    warmup: float | None = None,
) -> Report:
    rng = random.Random(seed)
    duration = max(duration, 20.0)
    warmup = warmup if warmup is not None else max(8.0, duration / 5)
    settings = Settings()
    report = Report("soak", kind, seed, duration)
    redis: PrivateRedis | None = None
    app_name = f"whsoak{uuid.uuid4().hex[:10]}"
    if kind == "redis":
        redis = PrivateRedis(persist=False)
        redis.start()
        url = store_url(kind, workdir, base=redis.url)
    else:
        url = store_url(kind, workdir)
        if kind == "postgres":
            url += f"&application_name={app_name}"
    retention: dict[str, Any] = {"keep_completed": KEEP_LAST, "keep_failed": KEEP_LAST}
    cluster = Cluster(url, workdir, settings)
    app = producer(url)
    probe = Connections(kind, redis, app_name)
    samples = Samples()
    enqueued: list[str] = []
    user_errors: Counter[str] = Counter()
    purged = 0
    try:
        await app.open()
        procs = await cluster.start(workers, **retention)
        pids = [p.pid for p in procs]
        started = time.time()
        owed, last, last_purge, next_sample = 0.0, started, started, started
        while (now := time.time()) - started < duration:
            owed += (now - last) * rate
            last = now
            if (n := int(owed)) > 0:
                owed -= n
                try:
                    await _produce(app, cluster, enqueued, n, rng)
                except Exception as exc:  # what a user enqueueing would see
                    user_errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    owed += n
            if now - last_purge >= PURGE_EVERY:
                last_purge = now
                try:
                    purged += await app.purge(keep_last=KEEP_LAST)
                except Exception as exc:
                    user_errors[f"purge: {type(exc).__name__}: {exc}"[:200]] += 1
            if now >= next_sample:
                next_sample = now + 1.0
                samples.rows.append(await _sample(cluster, pids, probe))
            await asyncio.sleep(0.02)
        ended = time.time()
        await all_finished(cluster, enqueued, 60)
        alive = all(p.poll() is None for p in procs)
    finally:
        await cluster.stop_all()
        await app.close()
        await probe.close()
    try:
        f = report.figures
        f["jobs"] = len(enqueued)
        f["jobs_per_s"] = len(enqueued) / (ended - started)
        f["purged"] = purged
        post = samples.after(started + warmup)
        third = max(1, len(post) // 3)
        early, late = post[:third], post[-third:]
        rss_growth, per_10k = [], []
        for pid in pids:
            xs = [s.finished[pid] for s in post]
            ys = [s.rss[pid] / MIB for s in post]
            rss_growth.append(statistics.median(ys[-3:]) - statistics.median(ys[:3]))
            if len(set(xs)) > 1:
                slope = statistics.linear_regression(xs, ys).slope
                per_10k.append(slope * 10_000)
        f["rss_after_warmup_mib"] = max(post[0].rss[p] for p in pids) / MIB
        f["rss_growth_mib"] = max(rss_growth)
        f["rss_growth_per_10k_jobs_mib"] = max(per_10k, default=0.0)
        # A leak raises the floor; a pool that grows for a burst and shrinks (process
        # children, connections) only moves the peaks. So: the lowest count of the last
        # third against the lowest of the first.
        fd_growth = max(_floor(late, "fds", p) - _floor(early, "fds", p) for p in pids)
        f["fds"] = "/".join(
            f"{min(s.fds[p] for s in post)}-{max(s.fds[p] for s in post)}" for p in pids
        )
        f["fd_growth"] = fd_growth
        if post[0].conns is not None:
            conn_growth = min(s.conns or 0 for s in late) - min(s.conns or 0 for s in early)
            f["server_connections"] = (
                f"{min(s.conns or 0 for s in post)}-{max(s.conns or 0 for s in post)}"
            )
            f["connection_growth"] = conn_growth
            report.check(
                conn_growth <= CONN_SLACK,
                f"server connections grew by {conn_growth} after the warm-up",
            )
        _write_csv(workdir / "samples.csv", samples.rows, pids)
        locked = sum(cluster.log_count(p.pid, w) for p in cluster.procs for w in LOCKED)
        locked += sum(n for e, n in user_errors.items() if any(w in e for w in LOCKED))
        by_job = cluster.reader.by_job()
        lost = sum(1 for j in enqueued if not any(r.event == "finish" for r in by_job.get(j, [])))
        f["lost"] = lost
        f["database_is_locked"] = locked
        f["producer_errors"] = sum(user_errors.values())
        report.check(alive, "a worker exited during the soak")
        report.check(lost == 0, f"{lost} job(s) lost")
        report.check(locked == 0, f"'{LOCKED[0]}' reached a user {locked} time(s)")
        report.check(not user_errors, f"producer errors: {dict(user_errors)}")
        report.check(fd_growth <= FD_SLACK, f"open file descriptors grew by {fd_growth}")
        report.check(len(early) >= 3, "too few samples after the warm-up: run longer")
    finally:
        cluster.close()
        if redis is not None:
            redis.cleanup()
        else:
            await drop_store(url)
    return report


async def _produce(
    app: Any, cluster: Cluster, enqueued: list[str], n: int, rng: random.Random
) -> None:
    """``n`` jobs: most inline, about 5% failing their first attempt, 5% in a child."""
    inline, in_child = [], []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.05:
            in_child.append({"kind": "ok"})
        else:
            inline.append({"sleep": rng.uniform(0.0, 0.05), "fail_first": roll > 0.95})
    ids = [h.id for h in await app.enqueue_many("work", inline)]
    if in_child:
        ids += [h.id for h in await app.enqueue_many("work_process", in_child)]
    cluster.writer.write_many(ids, "enqueued")
    enqueued.extend(ids)


def _floor(rows: list[Sample], what: str, pid: int) -> int:
    return min(int(getattr(s, what)[pid]) for s in rows)


def _write_csv(path: Path, rows: list[Sample], pids: list[int]) -> None:
    """Every sample, for a closer look at a long run (kept with --keep-failed)."""
    head = ["at", "conns"] + [f"{k}_{p}" for p in pids for k in ("rss", "fds", "finished")]
    lines = [",".join(head)]
    for s in rows:
        cells = [f"{s.at:.1f}", str(s.conns)]
        cells += [str(v) for p in pids for v in (s.rss[p], s.fds[p], s.finished[p])]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


async def _sample(cluster: Cluster, pids: list[int], probe: Connections) -> Sample:
    done: dict[int, int] = dict.fromkeys(pids, 0)
    for pid, n in cluster.reader.conn.execute(
        "SELECT pid, COUNT(*) FROM ledger WHERE event = 'finish' GROUP BY pid"
    ):
        done[pid] = n
    return Sample(
        time.time(),
        {p: _rss(p) for p in pids},
        {p: _fds(p) for p in pids},
        done,
        await probe.count(),
    )
