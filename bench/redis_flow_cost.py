"""``python -m bench.redis_flow_cost``: a Redis server's cost per flow step (or plain job).

A private ``redis-server`` (no persistence, nothing else on it) runs bench.flows' phases:
``flow`` (N/4 runs of the 4-step chain), ``chain`` (N/4 chains of 4 jobs, each enqueuing
the next with ``ctx.enqueue``: what a user writes without flows) or ``plain`` (N no-op
jobs), one worker at concurrency 50; or only enqueues: ``enqueue`` (N one-job calls, one
after another), ``concurrent`` (N one-job calls by 100 producers at once, as
bench.measure's enqueue_concurrent) or ``bulk`` (``enqueue_many`` of 1,000); or only
starts: ``start`` (N runs of the chain flow started one after another, no worker; "per job"
reads "per start"); or a short queue, a worker at concurrency 10 keeping up: ``trickle``
(N one-job enqueues one after another, the worker draining them) or ``roundtrip`` (N
``app.run`` one after another: enqueue, run, await the result).
Printed: jobs/s, the server's CPU per job (``INFO cpu``), the scripts' time per job
(``INFO commandstats``) and, with ``--commands``, the commands they ran.

``--callgrind`` runs the server under valgrind's callgrind and prints the instructions it
executed per job in the phase: a count the machine's other load does not move (the run is
some 50 times slower, so keep N small), and the profile's file, for callgrind_annotate.
``--config`` sets a server option first, e.g. ``zset-max-listpack-entries=0``.
``--scripts`` denies the server's user FUNCTION (an ACL), so the backend calls scripts
only, as on Redis 6.2 or a cluster.

    python -m bench.redis_flow_cost flow 8000
    python -m bench.redis_flow_cost flow 2000 --callgrind
    python -m bench.redis_flow_cost start 1000 --callgrind
    python -m bench.redis_flow_cost plain 4000 --callgrind --config zset-max-listpack-entries=0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from typing import Any

import redis

from bench import flows
from bench.http import free_port

MODES = ("flow", "chain", "plain", "enqueue", "concurrent", "bulk", "start", "trickle", "roundtrip")


async def _phase(url: str, mode: str, n: int, before: Any, after: Any) -> float:
    app = flows.build(url)
    async with app:
        if mode in ("enqueue", "concurrent", "bulk", "start"):  # the writes (no worker)
            await app.enqueue("noop", -1)  # the library loaded, the queue listed
            await app.flows.start("chain", -1)
            before()
            t0 = time.perf_counter()
            if mode == "start":
                for k in range(n):
                    await app.flows.start("chain", k)
            elif mode == "enqueue":
                for k in range(n):
                    await app.enqueue("noop", k)
            elif mode == "concurrent":

                async def producer(first: int) -> None:
                    for k in range(first, n, 100):
                        await app.enqueue("noop", k)

                await asyncio.gather(*(producer(p) for p in range(100)))
            else:
                for s in range(0, n, 1000):
                    await app.enqueue_many("noop", range(s, min(n, s + 1000)))
            elapsed = time.perf_counter() - t0
            after()
            return elapsed
        if mode in ("trickle", "roundtrip"):  # a short queue: the worker keeps up
            worker = app.worker(concurrency=10)
            run = asyncio.create_task(worker.run())
            await app.run("noop", -1, timeout=30)  # the library loaded, the worker claiming
            before()
            t0 = time.perf_counter()
            for k in range(n):
                if mode == "roundtrip":
                    await app.run("noop", k, timeout=30)
                else:
                    await app.enqueue("noop", k)
            while worker.processed < n + 1 and not run.done():
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - t0
            after()
            worker.stop()
            await run
            return elapsed
        if mode == "plain":
            for s in range(0, n, 1000):
                await app.enqueue_many("noop", range(s, min(n, s + 1000)))
        elif mode == "chain":
            await app.enqueue_many("link", [[k, 1] for k in range(n // 4)])
        else:
            for k in range(n // 4):
                await app.flows.start("chain", k)
        worker = app.worker(concurrency=50, burst=True)
        before()
        t0 = time.perf_counter()
        run = asyncio.create_task(worker.run())
        while worker.processed < n and not run.done():
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - t0
        after()
        await run
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "mode",
        choices=MODES,
    )
    parser.add_argument("jobs", type=int, nargs="?", default=8000)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--config", action="append", default=[], help="name=value")
    parser.add_argument("--commands", action="store_true")
    parser.add_argument("--scripts", action="store_true", help="no Function library")
    args = parser.parse_args()
    port, folder = free_port(), tempfile.mkdtemp()
    out = os.path.join(folder, "callgrind.out")
    cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    if args.callgrind:
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}", *cmd]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(300):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        for option in args.config:
            client.config_set(*option.split("=", 1))
        if args.scripts:
            client.acl_setuser("default", enabled=True, commands=["-function"])

        def control(*what: str) -> None:
            if args.callgrind:
                subprocess.run(["callgrind_control", *what, str(server.pid)], check=True,
                               capture_output=True)  # fmt: skip

        def cpu() -> float:
            info = client.info("cpu")
            return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

        marks: dict[str, Any] = {}

        def before() -> None:
            client.config_resetstat()
            control("-i", "on")
            control("-z")
            marks["cpu"] = cpu()

        def after() -> None:
            marks["cpu"] = cpu() - marks["cpu"]
            control("-d")
            marks["stats"] = client.info("commandstats")

        url = f"redis://127.0.0.1:{port}/0"
        elapsed = asyncio.run(_phase(url, args.mode, args.jobs, before, after))
    finally:
        server.terminate()
        server.wait()
    n = args.jobs
    stats = marks["stats"]
    scripts = sum(v["usec"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_fcall"))
    line = (f"{args.mode}: {n / elapsed:,.0f}/s, server CPU {marks['cpu'] / n * 1e6:.1f} µs/job, "
            f"scripts {scripts / n:.1f} µs/job")  # fmt: skip
    if args.callgrind:
        with open(out + ".1") as f:
            total = next(int(r.split()[1]) for r in f if r.startswith(("summary:", "totals:")))
        line += f", {total / n:,.0f} instructions/job ({out}.1)"
    print(line)
    if args.commands:
        for name, v in sorted(stats.items(), key=lambda kv: -kv[1]["calls"])[:24]:
            print(f"  {name[8:]:24} {v['calls'] / n:6.2f} per job, {v['usec'] / n:6.2f} µs/job")


if __name__ == "__main__":
    main()
