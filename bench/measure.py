"""The measurements. Each one gets a fresh store and returns plain figures.

Producer-side measurements (enqueue, run() round trips) run in this process; processing
runs in a worker child (``bench.child``), so its CPU time and memory are the worker's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import math
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.tasks import NOOP, QUEUE, SLEEP, make_app
from workhorse import Workhorse, backend_from_url

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("memory", "sqlite", "redis", "postgres")
DURABLE = frozenset({"sqlite", "redis", "postgres"})
BULK_BATCH = 1000
CHILD_TIMEOUT_S = 300.0
SPLIT_CALLS = 100  # run() split into enqueue and wait
SPY_RATE = 2000  # samples a second

Progress = Callable[[int, int], None]  # (done, total)
Figures = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sizes:
    enqueue_one: int
    enqueue_bulk: int
    noop: int
    sleep: int
    roundtrip: int
    warmup: int


def sizes_for(kind: str, quick: bool) -> Sizes:
    if quick:
        return Sizes(
            enqueue_one=200, enqueue_bulk=2_000, noop=500, sleep=300, roundtrip=30, warmup=5
        )
    if kind == "memory":
        return Sizes(20_000, 100_000, 20_000, 20_000, 500, 50)
    return Sizes(3_000, 20_000, 10_000, 10_000, 500, 50)


DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True, slots=True)
class Servers:
    redis: str = DEFAULT_REDIS
    postgres: str = DEFAULT_POSTGRES


_CLASSES = {
    "memory": "MemoryBackend",
    "sqlite": "SQLiteBackend",
    "redis": "RedisBackend",
    "postgres": "PostgresBackend",
}


def module_problem(kind: str) -> str | None:
    """Why ``workhorse.backends.<kind>`` cannot be used yet (it may be half written)."""
    name = f"workhorse.backends.{kind}"
    if importlib.util.find_spec(name) is None:
        return f"{name} does not exist yet"
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        return f"{name} does not import: {type(exc).__name__}: {exc}"
    if not hasattr(module, _CLASSES[kind]):
        return f"{name} has no {_CLASSES[kind]} yet"
    return None


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    default_port = 6379 if parts.scheme.startswith("redis") else 5432
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def unavailable(kind: str, servers: Servers) -> str | None:
    """Why ``kind`` cannot be measured here, or None when it can."""
    problem = module_problem(kind)
    if problem is not None:
        return problem
    server = {"redis": servers.redis, "postgres": servers.postgres}.get(kind)
    if server is not None and not reachable(server):
        return f"{kind} is not reachable at {server}"
    return None


def child_path() -> str:
    """PYTHONPATH for a worker child: this tree's harness and this tree's workhorse, so a
    copy of the benchmark next to an older checkout measures that checkout (bench.ab)."""
    return os.pathsep.join((str(ROOT / "src"), str(ROOT)))


def _with_param(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


@contextlib.asynccontextmanager
async def fresh_store(kind: str, servers: Servers) -> AsyncIterator[str]:
    """A URL no other measurement has used: its own file, key prefix or schema. Durable
    stores are dropped afterwards."""
    tag = f"whb{uuid.uuid4().hex[:12]}"
    tmp: str | None = None
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix="workhorse-bench-")
        url = f"sqlite:///{tmp}/bench.db"
    elif kind == "redis":
        url = _with_param(servers.redis, "prefix", tag)
    elif kind == "postgres":
        url = _with_param(servers.postgres, "schema", tag)
    else:
        raise ValueError(f"unknown backend {kind!r}; choose from {', '.join(BACKENDS)}")
    try:
        yield url
    finally:
        if kind in DURABLE:
            backend = backend_from_url(url)
            try:
                await backend.open()
                drop = getattr(backend, "drop", None)
                if drop is not None:
                    await drop()
            finally:
                await backend.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# -- producer side ---------------------------------------------------------------------
async def enqueue_one(url: str, n: int, progress: Progress) -> Figures:
    """``await app.enqueue(...)`` in a loop: the cost of one job from a request handler."""
    async with make_app(url) as app:
        task = app.get_task(NOOP)
        await app.enqueue(task)  # connect and create the schema outside the timing
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            await app.enqueue(task)
            if i & 255 == 255:
                progress(i + 1, n)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    progress(n, n)
    return {"rate": n / elapsed, "client_cpu_us": cpu / n * 1e6, "n": n}


PRODUCERS = 100  # coroutines enqueueing at once in enqueue_concurrent


async def enqueue_concurrent(url: str, n: int, progress: Progress) -> Figures:
    """``PRODUCERS`` coroutines each awaiting ``app.enqueue(...)`` in a loop, in one process:
    a web server's request handlers enqueueing at the same time."""
    async with make_app(url) as app:
        task = app.get_task(NOOP)
        await app.enqueue(task)
        per = max(1, n // PRODUCERS)

        async def producer() -> None:
            for _ in range(per):
                await app.enqueue(task)

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    total = per * PRODUCERS
    progress(n, n)
    return {"rate": total / elapsed, "client_cpu_us": cpu / total * 1e6, "n": total}


async def enqueue_bulk(url: str, n: int, progress: Progress) -> Figures:
    """``enqueue_many`` in batches of 1000."""
    async with make_app(url) as app:
        task = app.get_task(NOOP)
        await app.enqueue(task)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for start in range(0, n, BULK_BATCH):
            size = min(BULK_BATCH, n - start)
            await app.enqueue_many(task, [None] * size)
            progress(start + size, n)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"rate": n / elapsed, "client_cpu_us": cpu / n * 1e6, "n": n}


def percentile(sorted_values: list[float], q: float) -> float:
    # nearest-rank: the value at or below which q of the calls finished
    index = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


async def _timed_runs(url: str, n: int, warmup: int, progress: Progress) -> dict[str, list[float]]:
    async with make_app(url) as app:
        return await _timed_runs_on(app, n, warmup, progress)


async def roundtrip(kind: str, url: str, n: int, warmup: int, progress: Progress) -> Figures:
    """``app.run()`` over and over with a worker running: enqueue, run, wait, result."""
    if kind in DURABLE:
        # The worker in its own process: the topology users deploy.
        async with make_app(url) as app:
            await app.counts([QUEUE])  # create the store before the worker races to
        child = await _Child.start("serve", url, concurrency=10)
        try:
            await child.wait_ready()
            times = await _timed_runs(url, n, warmup, progress)
        finally:
            worker = await child.stop()
        extra = {"worker_processed": worker.get("processed"), "worker_cpu_s": worker.get("cpu_s")}
    else:
        async with make_app(url) as app:
            in_process = app.worker(queues={QUEUE: 10})
            running = asyncio.create_task(in_process.run())
            try:
                times = await _timed_runs_on(app, n, warmup, progress)
            finally:
                in_process.stop()
                await running
        extra = {}
    ms = sorted(t * 1000 for t in times["run"])
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 0.99),
        "mean_ms": statistics.fmean(ms),
        "enqueue_p50_ms": statistics.median(times["enqueue"]) * 1000,
        "wait_p50_ms": statistics.median(times["wait"]) * 1000,
        "n": n,
        **extra,
    }


async def _timed_runs_on(
    app: Workhorse, n: int, warmup: int, progress: Progress
) -> dict[str, list[float]]:
    task = app.get_task(NOOP)
    for _ in range(warmup):
        await app.run(task, timeout=30)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await app.run(task, timeout=30)
        times.append(time.perf_counter() - t0)
        if i % 25 == 24:
            progress(i + 1, n)
    # The same call in its two halves (run() is enqueue, then wait), to show where a
    # round trip's time goes: the store's write, or the worker and the wake-ups.
    enqueue, wait = [], []
    for _ in range(min(n, SPLIT_CALLS)):
        t0 = time.perf_counter()
        handle = await app.enqueue(task, timeout=30)
        t1 = time.perf_counter()
        await handle.result(timeout=30)
        enqueue.append(t1 - t0)
        wait.append(time.perf_counter() - t1)
    progress(n, n)
    return {"run": times, "enqueue": enqueue, "wait": wait}


# -- worker side -----------------------------------------------------------------------
async def processing(
    kind: str,
    url: str,
    task: str,
    n: int,
    concurrency: int,
    progress: Progress,
    profile: str | None = None,
    spy: str | None = None,
    rss_every: int = 0,
) -> Figures:
    """Pre-enqueue ``n`` jobs, then one worker process runs them all. ``profile``: write a
    cProfile dump there; ``spy``: sample the worker with py-spy into that file (raw)."""
    if kind in DURABLE:
        async with make_app(url) as app:
            for start in range(0, n, BULK_BATCH):
                await app.enqueue_many(task, [None] * min(BULK_BATCH, n - start))
    child = await _Child.start(
        "process",
        url,
        concurrency=concurrency,
        task=task,
        n=n,
        enqueue=kind not in DURABLE,
        profile=profile,
        hold=1.0 if spy else 0.0,
        rss_every=rss_every,
    )
    sampler = None
    if spy:
        await child.expect("armed")
        sampler = await _start_py_spy(child.proc.pid, spy)
    result = await child.finish(lambda done: progress(done, n))
    if sampler is not None:
        async with asyncio.timeout(60):
            _, err = await sampler.communicate()
        if sampler.returncode != 0:
            raise RuntimeError(f"py-spy failed ({sampler.returncode}): {err.decode()[-500:]}")
    if result.get("error"):
        raise RuntimeError(f"{task} on {kind}: {result['error']}")
    jobs = result["n"]
    return {
        "rate": jobs / result["seconds"],
        **({"steady_rate": result["steady_rate"]} if result.get("steady_rate") else {}),
        "worker_cpu_us": result["cpu_s"] / jobs * 1e6,
        "rss_mb": result["rss_mb"],
        "peak_rss_mb": result["peak_rss_mb"],
        "seconds": result["seconds"],
        "n": jobs,
        "rss_trace": result.get("rss_trace", []),
    }


async def noop_processing(
    kind: str,
    url: str,
    n: int,
    progress: Progress,
    profile: str | None = None,
    spy: str | None = None,
) -> Figures:
    return await processing(kind, url, NOOP, n, 10, progress, profile, spy)


def py_spy() -> str | None:
    """The py-spy binary, if installed (it is a tool, not a project dependency)."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def _start_py_spy(pid: int, out: str) -> asyncio.subprocess.Process:
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    return await asyncio.create_subprocess_exec(
        binary,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(SPY_RATE),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        out,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def soak(kind: str, url: str, n: int, progress: Progress) -> Figures:
    """Many no-op jobs through one worker, noting its RSS every tenth: memory must stay
    flat (a durable store keeps the jobs outside the worker)."""
    figures = await processing(kind, url, NOOP, n, 10, progress, rss_every=max(1, n // 10))
    trace = figures["rss_trace"]
    first = trace[0][1] if trace else figures["rss_mb"]
    last = trace[-1][1] if trace else figures["rss_mb"]  # at the last job, before stopping
    return {
        "n": n,
        "rate": figures["rate"],
        "worker_cpu_us": figures["worker_cpu_us"],
        "rss_first_tenth_mb": first,
        "rss_end_mb": last,
        "rss_growth_mb": last - first,
        "rss_after_stop_mb": figures["rss_mb"],
        "rss_trace": trace,
    }


async def sleep_processing(kind: str, url: str, n: int, progress: Progress) -> Figures:
    return await processing(kind, url, SLEEP, n, 100, progress)


class _Child:
    """A ``bench.child`` process and its line protocol."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr_path: str) -> None:
        self.proc = proc
        self.stderr_path = stderr_path

    @classmethod
    async def start(
        cls,
        mode: str,
        url: str,
        *,
        concurrency: int,
        task: str = NOOP,
        n: int = 0,
        enqueue: bool = False,
        profile: str | None = None,
        hold: float = 0.0,
        rss_every: int = 0,
    ) -> _Child:
        args = [
            sys.executable,
            "-m",
            "bench.child",
            mode,
            "--url",
            url,
            "--task",
            task,
            "--n",
            str(n),
            "--concurrency",
            str(concurrency),
        ]
        if enqueue:
            args.append("--enqueue")
        if profile:
            args += ["--profile", profile]
        if hold:
            args += ["--hold", str(hold)]
        if rss_every:
            args += ["--rss-every", str(rss_every)]
        fd, stderr_path = tempfile.mkstemp(prefix="workhorse-bench-", suffix=".stderr")
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=fd,
                env={**os.environ, "PYTHONPATH": child_path()},
            )
        finally:
            os.close(fd)
        return cls(proc, stderr_path)

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            text = Path(self.stderr_path).read_text(errors="replace").strip()
            return "\n".join(text.splitlines()[-15:])
        return ""

    async def _line(self) -> tuple[str, Any]:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            return "eof", None
        kind, _, payload = raw.decode().strip().partition(" ")
        return kind, orjson.loads(payload) if payload else None

    async def expect(self, word: str) -> None:
        async with asyncio.timeout(60):
            kind, payload = await self._line()
        if kind != word:
            await self.proc.wait()
            raise RuntimeError(
                f"the worker child did not start ({kind} {payload}):\n{self._stderr_tail()}"
            )

    async def wait_ready(self) -> None:
        await self.expect("ready")

    async def finish(self, on_progress: Callable[[int], None] | None = None) -> Figures:
        result: Figures | None = None
        try:
            async with asyncio.timeout(CHILD_TIMEOUT_S):
                while True:
                    kind, payload = await self._line()
                    if kind == "progress" and on_progress is not None:
                        on_progress(int(payload))
                    elif kind == "result":
                        result = payload
                    elif kind == "eof":
                        break
                await self.proc.wait()
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            tail = self._stderr_tail()
            with contextlib.suppress(OSError):
                os.unlink(self.stderr_path)
        if result is None:
            raise RuntimeError(
                f"the worker child exited with {self.proc.returncode} and no result:\n{tail}"
            )
        if result.get("error") and tail:
            result["error"] = f"{result['error']}\n{tail}"
        return result

    async def stop(self) -> Figures:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.finish()
