"""``python -m bench.stores``: what one claim and one finish cost the store, per job.

python -m bench.stores                      # redis and postgres, batches of 10 and 50
python -m bench.stores --backends postgres --batch 10

No worker: the backend's own ``claim`` and ``finish`` called in turn on pre-enqueued no-op
jobs, batch after batch, so each figure belongs to one statement or script:

- wall: the call's time as this process sees it (round trip, server work, commit);
- client CPU: this process's CPU (building the call, the driver, decoding the answer);
- server: PostgreSQL, the CPU of the connection's server process (read from /proc, so
  only for a server on this machine); Redis, the script's own time from INFO
  commandstats (``usec`` of EVALSHA), with the commands it ran per job.

On a shared server the Redis figures include other clients' scripts run meanwhile: use a
private one (``--redis-url redis://127.0.0.1:6391/0`` after ``redis-server --port 6391``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from bench.measure import DEFAULT_POSTGRES, DEFAULT_REDIS, Servers, fresh_store
from bench.tasks import NOOP, QUEUE, make_app
from workhorse.job import Outcome


def done() -> Outcome:
    """A new outcome per job, as a worker makes: one sent again is a replay (the store's
    finish takes another path for it)."""
    return Outcome("completed", result=b"null")


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process on this machine, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _fill(url: str, n: int, pool: str = "") -> Any:
    app = make_app(url + pool)
    await app.open()
    for start in range(0, n, 1000):
        await app.enqueue_many(NOOP, [None] * min(1000, n - start))
    return app


async def postgres(url: str, n: int, batch: int) -> str:
    # One pooled connection, so every statement runs on the server process we read.
    app = await _fill(url, n, "&pool_min=1&pool_max=1")
    backend = app.backend
    try:
        [(pid,)] = await backend._rows("SELECT pg_backend_pid()")
        cost = {"claim": [0.0, 0.0, 0.0], "finish": [0.0, 0.0, 0.0]}  # wall, client, server

        async def timed(name: str, call: Callable[..., Any], *args: Any) -> Any:
            s0, c0, t0 = _proc_cpu(pid), time.process_time(), time.perf_counter()
            out = await call(*args)
            row = cost[name]
            row[0] += time.perf_counter() - t0
            row[1] += time.process_time() - c0
            row[2] += _proc_cpu(pid) - s0
            return out

        for _ in range(n // batch):
            leases = await timed("claim", backend.claim, [QUEUE], "w", batch, 30.0)
            await timed("finish", backend.finish, [(x, done()) for x in leases])
        return "; ".join(
            f"{name}: wall {w / n * 1e6:.0f} µs, client CPU {c / n * 1e6:.0f} µs, "
            f"server CPU {s / n * 1e6:.0f} µs"
            for name, (w, c, s) in cost.items()
        )
    finally:
        await app.close()


async def redis(url: str, n: int, batch: int) -> str:
    app = await _fill(url, n)
    backend = app.backend
    wire = backend._conn()

    async def stats() -> dict[str, tuple[int, int]]:
        text = (await wire.call("INFO", "commandstats")).decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line[8:].partition(":")
                kv = dict(part.split("=") for part in rest.split(","))
                out[name] = (int(kv["calls"]), int(kv["usec"]))
        return out

    def delta(a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]]) -> str:
        calls = {k: b[k][0] - a.get(k, (0, 0))[0] for k in b}
        usec = b.get("evalsha", (0, 0))[1] - a.get("evalsha", (0, 0))[1]
        inner = sorted(
            ((k, c) for k, c in calls.items() if c and k not in ("evalsha", "info")),
            key=lambda kc: -kc[1],
        )
        per = ", ".join(f"{k} {c / n:.1f}" for k, c in inner if c / n >= 0.5)
        return f"script {usec / n:.1f} µs/job (commands per job: {per})"

    try:
        held = []
        before = await stats()
        for _ in range(n // batch):
            held.append(await backend.claim([QUEUE], "w", batch, 30.0))
        claimed = await stats()
        for leases in held:
            await backend.finish([(x, done()) for x in leases])
        finished = await stats()
        return f"claim: {delta(before, claimed)}; finish: {delta(claimed, finished)}"
    finally:
        await app.close()


async def run(args: argparse.Namespace) -> None:
    servers = Servers(redis=args.redis_url, postgres=args.postgres_url)
    for kind in args.backends.split(","):
        for batch in args.batch:
            async with fresh_store(kind, servers) as url:
                measure = postgres if kind == "postgres" else redis
                print(f"{kind}, batches of {batch}: {await measure(url, args.n, batch)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--backends", default="redis,postgres")
    p.add_argument("--batch", type=int, nargs="+", default=[10, 50])
    p.add_argument("--n", type=int, default=5000, help="jobs per measurement")
    p.add_argument("--redis-url", default=os.environ.get("WORKHORSE_BENCH_REDIS", DEFAULT_REDIS))
    p.add_argument(
        "--postgres-url", default=os.environ.get("WORKHORSE_BENCH_POSTGRES", DEFAULT_POSTGRES)
    )
    args = p.parse_args(argv)
    for kind in args.backends.split(","):
        if kind not in ("redis", "postgres"):
            raise SystemExit(f"bench.stores measures redis and postgres, not {kind!r}")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
