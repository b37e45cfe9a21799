"""``python -m bench.redis_script_cost``: a Redis server's instructions per call of each
of the worker's scripts, called by EVALSHA and as a Function (FCALL), on a private
``redis-server`` run under valgrind's callgrind (a count the machine's load does not move).

One backend, one server: for each round and each way of calling (alternated), N jobs are
enqueued (not counted), then each script is called N times, one call at a time, and the
server's instructions in that phase are divided by N. A claim takes one job; a renew,
an update and a finish name one lease; a fetch reads one job.

    python -m bench.redis_script_cost 300 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from bench.http import free_port
from workhorse import codec
from workhorse.backends.redis import RedisBackend
from workhorse.job import Event, NewJob, Outcome, WorkerInfo, new_job_id

WAYS = ("EVALSHA", "FCALL")


class _Server:
    """A private redis-server under callgrind, its instrumentation switched per phase."""

    def __init__(self) -> None:
        self.port, self.folder = free_port(), tempfile.mkdtemp()
        out = os.path.join(self.folder, "callgrind.out")
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}", "redis-server", "--port", str(self.port),
             "--save", "", "--appendonly", "no"],
            cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        for _ in range(300):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        self._control("-i", "on")

    def _control(self, *what: str) -> None:
        subprocess.run(["callgrind_control", *what, str(self.proc.pid)], check=True,
                       capture_output=True)  # fmt: skip

    def zero(self) -> None:
        self._control("-z")

    def instructions(self) -> int:
        """The instructions since zero(), read from a dump made now."""
        before = set(glob.glob(os.path.join(self.folder, "callgrind.out.*")))
        self._control("-d")
        (dump,) = set(glob.glob(os.path.join(self.folder, "callgrind.out.*"))) - before
        with open(dump) as f:
            return next(int(r.split()[1]) for r in f if r.startswith(("summary:", "totals:")))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def _use(b: RedisBackend, way: str) -> None:
    assert b._library is not None, "the server did not load the library (Redis 7+ needed)"
    for name, script in b._scripts.items():
        script.use_function(b._library.functions.get(name) if way == "FCALL" else None)
    b._repack()


async def _round(b: RedisBackend, server: _Server, n: int, way: str) -> dict[str, float]:
    _use(b, way)
    queue = "q" + way.lower()
    await b.enqueue([NewJob(new_job_id(), "t", queue, codec.dumps({})) for _ in range(n)])
    leases: list[Any] = []
    out: dict[str, float] = {}

    async def phase(name: str, call: Callable[[int], Awaitable[Any]]) -> None:
        server.zero()
        for i in range(n):
            await call(i)
        out[name] = server.instructions() / n

    async def claim(_: int) -> None:
        leases.extend(await b.claim([queue], "w1", 1, 60.0))

    info = WorkerInfo("w1", "h", 1, {queue: 1}, time.time())
    qk = b._q(queue)
    await phase("peek", lambda _: b._call("peek", qk))
    await phase("claim", claim)
    await phase("renew", lambda i: b.renew([leases[i]]))
    await phase("update", lambda i: b.update(leases[i], progress=i))
    await phase("finish", lambda i: b.finish([(leases[i], Outcome("completed", b"1"))]))
    await phase("fetch", lambda i: b.get(leases[i].job_id))
    await phase("publish", lambda i: b.publish([Event("app.ping", data={"n": i})]))
    await phase("counter", lambda i: b.counter_add(f"n{i}", 1))
    await phase("beat", lambda _: b.beat(info, 30.0))
    await phase("reclaim", lambda _: b._call("reclaim", qk))
    return out


async def _main(n: int, rounds: int) -> None:
    server = _Server()
    b = RedisBackend(f"redis://127.0.0.1:{server.port}/0?prefix=bench")
    try:
        await b.open()
        got: dict[str, dict[str, list[float]]] = {way: {} for way in WAYS}
        for r in range(rounds):
            for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                for name, count in (await _round(b, server, n, way)).items():
                    got[way].setdefault(name, []).append(count)
        await b.close()
    finally:
        server.stop()
    print(f"{'script':10} {'EVALSHA':>10} {'FCALL':>10} {'change':>8}   (instructions per call)")
    for name in got["EVALSHA"]:
        old, new = (min(got[w][name]) for w in WAYS)
        print(f"{name:10} {old:10,.0f} {new:10,.0f} {(new - old) / old:+8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calls", type=int, nargs="?", default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(_main(args.calls, args.rounds))


if __name__ == "__main__":
    main()
