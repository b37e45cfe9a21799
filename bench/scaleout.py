"""Scale-out: no-op jobs/s with 1, 2 and 4 worker processes on one store.

python -m bench.scaleout                          # redis and postgres, 1/2/4 workers
python -m bench.scaleout --backends redis --workers 1,2 --repeat 1
python -m bench.scaleout --backends redis --workers 1 --concurrency 40   # one process, c=40
python -m bench.scaleout --backends redis --task sleep10 --jobs 5000      # 10 ms jobs

The jobs are enqueued first. Each worker process opens its app and says ``ready``; once
all are ready the parent writes ``go`` to every one, and the rate is the jobs over the
time from ``go`` to the last finish in any worker (each worker notes the CLOCK_MONOTONIC
time of its own last finish, which is the same clock in every process on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench import measure
from bench.measure import BULK_BATCH, ROOT, Servers, child_path
from bench.tasks import NOOP, QUEUE, SLEEP, make_app

WORKERS = (1, 2, 4)
JOBS = {"redis": 20_000, "postgres": 10_000, "sqlite": 5_000}
STALL_S = 60.0
REPORT_EVERY_S = 0.02

Progress = Callable[[int, int], None]


# -- the worker process -------------------------------------------------------------------
def _say(kind: str, payload: Any = None) -> None:
    line = kind if payload is None else f"{kind} {orjson.dumps(payload).decode()}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _child(url: str, concurrency: int) -> None:
    app = make_app(url)
    await app.open()
    try:
        worker = app.worker(queues={QUEUE: concurrency})
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        _say("ready")
        if (await reader.readline()).strip() != b"go":
            return
        cpu0 = time.process_time()
        running = asyncio.create_task(worker.run())
        stop = asyncio.create_task(reader.readline())  # "stop" or EOF
        last, last_at, next_report = 0, time.monotonic(), 0.0
        while not stop.done() and not running.done():
            await asyncio.sleep(0.001)
            now = time.monotonic()
            if worker.processed != last:
                last, last_at = worker.processed, now
            if now >= next_report:
                _say("progress", last)
                next_report = now + REPORT_EVERY_S
        worker.stop()
        await running
        stop.cancel()
        _say(
            "result",
            {
                "processed": worker.processed,
                "last_finish": last_at,
                "cpu_s": time.process_time() - cpu0,
            },
        )
    finally:
        await app.close()


# -- the parent -------------------------------------------------------------------------
class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.done = 0
        self.result: dict[str, Any] | None = None

    async def line(self) -> tuple[str, Any]:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            return "eof", None
        kind, _, payload = raw.decode().strip().partition(" ")
        return kind, orjson.loads(payload) if payload else None

    async def pump(self) -> None:
        while True:
            kind, payload = await self.line()
            if kind == "progress":
                self.done = int(payload)
            elif kind == "result":
                self.result = payload
                self.done = int(payload["processed"])
            elif kind == "eof":
                return

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write(word.encode() + b"\n")


async def _spawn(url: str, concurrency: int) -> _Worker:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.scaleout",
        "--child",
        url,
        "--concurrency",
        str(concurrency),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": child_path()},
    )
    return _Worker(proc)


async def once(
    kind: str,
    url: str,
    workers: int,
    n: int,
    progress: Progress,
    concurrency: int = 10,
    task: str = NOOP,
) -> dict[str, Any]:
    """One run: ``n`` jobs of ``task``, ``workers`` processes at ``concurrency`` each."""
    async with make_app(url) as app:
        for start in range(0, n, BULK_BATCH):
            await app.enqueue_many(task, [None] * min(BULK_BATCH, n - start))
    procs = [await _spawn(url, concurrency) for _ in range(workers)]
    pumps: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(60):
            for w in procs:
                kind_, _ = await w.line()
                if kind_ != "ready":
                    raise RuntimeError(f"a {kind} worker did not start ({kind_})")
        pumps = [asyncio.create_task(w.pump()) for w in procs]
        for w in procs:
            w.send("go")
        t0 = time.monotonic()
        last_total, last_change = 0, t0
        while (total := sum(w.done for w in procs)) < n:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            if total != last_total:
                last_total, last_change = total, now
                progress(total, n)
            elif now - last_change > STALL_S or all(p.done() for p in pumps):
                raise RuntimeError(f"{kind}, {workers} workers: stalled at {total} of {n} jobs")
        for w in procs:
            w.send("stop")
        async with asyncio.timeout(60):
            await asyncio.gather(*pumps)
            for w in procs:
                await w.proc.wait()
        results = [w.result for w in procs]
        if any(r is None for r in results):
            raise RuntimeError(f"{kind}, {workers} workers: a worker gave no result")
        done = [r for r in results if r is not None]
        end = max(r["last_finish"] for r in done)
        processed = sum(r["processed"] for r in done)
        return {
            "rate": n / (end - t0),
            "worker_cpu_us": sum(r["cpu_s"] for r in done) / n * 1e6,
            "per_worker": [r["processed"] for r in done],
            "processed": processed,
            "n": n,
        }
    finally:
        for p in pumps:
            p.cancel()
        for w in procs:
            if w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGKILL)
                await w.proc.wait()


async def run(
    kinds: list[str],
    servers: Servers,
    workers: tuple[int, ...] = WORKERS,
    repeat: int = 3,
    jobs: dict[str, int] | None = None,
    log: Callable[[str], None] = print,
    concurrency: int = 10,
    task: str = NOOP,
) -> dict[str, Any]:
    """``{kind: {str(workers): {"runs": [...], "rate": median}}}``."""
    sizes = {**JOBS, **(jobs or {})}
    out: dict[str, Any] = {}
    for kind in kinds:
        out[kind] = {}
        for count in workers:
            runs: list[dict[str, Any]] = []
            for rep in range(repeat):
                try:
                    async with measure.fresh_store(kind, servers) as url:
                        fig = await once(
                            kind, url, count, sizes[kind], lambda d, t: None, concurrency, task
                        )
                except Exception as exc:
                    fig = {"error": f"{type(exc).__name__}: {exc}"}
                fig["load1_before"] = os.getloadavg()[0]
                runs.append(fig)
                shown = f"{fig['rate']:,.0f} jobs/s" if "rate" in fig else fig["error"]
                log(
                    f"scale-out {kind} {task} {count} worker(s) x concurrency {concurrency} "
                    f"({rep + 1}/{repeat}): {shown} (load {fig['load1_before']:.1f}"
                    + (f", worker CPU {fig['worker_cpu_us']:.0f} us/job)" if "rate" in fig else ")")
                )
            rates = [r["rate"] for r in runs if "rate" in r]
            out[kind][str(count)] = {
                "runs": runs,
                "rate": statistics.median(rates) if rates else None,
                "n": sizes[kind],
            }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    p.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=10, help="slots per worker process")
    p.add_argument("--task", choices=(NOOP, SLEEP), default=NOOP)
    p.add_argument("--jobs", type=int, help="jobs per run (default: per backend)")
    p.add_argument("--backends", default="redis,postgres")
    p.add_argument("--workers", default=",".join(map(str, WORKERS)))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default="bench/results/scaleout.json")
    args = p.parse_args(argv)
    if args.child:
        asyncio.run(_child(args.child, args.concurrency))
        return
    servers = Servers(
        redis=os.environ.get("WORKHORSE_BENCH_REDIS", measure.DEFAULT_REDIS),
        postgres=os.environ.get("WORKHORSE_BENCH_POSTGRES", measure.DEFAULT_POSTGRES),
    )
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    for kind in kinds:
        why = measure.unavailable(kind, servers)
        if why:
            raise SystemExit(f"cannot scale out on {kind}: {why}")
    workers = tuple(int(w) for w in args.workers.split(","))
    jobs = None if args.jobs is None else dict.fromkeys(kinds, args.jobs)
    result = asyncio.run(
        run(
            kinds, servers, workers, args.repeat, jobs, concurrency=args.concurrency, task=args.task
        )
    )
    with open(args.json, "wb") as f:
        f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
