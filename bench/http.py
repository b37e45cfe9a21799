"""``python -m bench.http``: requests/s and p50/p99 latency of an http-mode no-op task, of
``POST /api/tasks/noop/jobs`` and of ``?wait=``, against a plain FastAPI route doing
nothing, in one run: one uvicorn worker process, the load generator on loopback.

python -m bench.http                                   # redis, writes docs/benchmarks-http.md
python -m bench.http --url sqlite:///tmp/b.db --seconds 3 --no-write
python -m bench.http --wrk    # the load from wrk (native): installs Debian's wrk if missing

``--wrk`` runs ``apt-get install -y wrk`` when wrk is not on PATH and this is root: a
bench-only dependency (no test needs it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks-http.md"
RESULTS = ROOT / "bench" / "results" / "http.json"
SCENARIOS = (
    ("plain FastAPI route", "/plain"),
    ("http-mode no-op task", "/noop-http"),
    ("POST /api/tasks/noop/jobs", "/api/tasks/noop/jobs"),
    ("POST /api/tasks/noop/jobs?wait=5", "/api/tasks/noop/jobs?wait=5"),
)


@dataclass
class Figure:
    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float = 0.0  # the server process's CPU time per request

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(base: str, path: str, seconds: float, concurrency: int) -> Figure:
    """``concurrency`` clients POST ``{}`` back to back for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        for _ in range(concurrency):  # warm: connections open, routes and store touched
            await http.post(path, json={})
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await http.post(path, json={})
                latencies.append(time.perf_counter() - t0)
                if r.status_code >= 300 and r.status_code != 202:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        took = time.perf_counter() - t0
    latencies.sort()
    return Figure(
        path,
        len(latencies),
        errors,
        took,
        1000 * statistics.median(latencies),
        1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


# wrk's request: POST {} as JSON (the same request the Python generator sends).
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package first if it is missing (root only)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("--wrk needs wrk on PATH: apt-get install wrk (as root)")
    print("installing wrk with apt-get (bench only: no test needs it)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"wrk printed an unknown latency {text!r}")
    return float(m[1]) * _UNITS[m[2]]


def wrk_load(
    wrk: str, base: str, path: str, seconds: float, concurrency: int, server: int
) -> Figure:
    """One wrk thread (the server needs the other core) keeping ``concurrency``
    connections busy for ``seconds``, after a one-second warm-up; the ``server``
    process's CPU time is read around the measured run only."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
    try:
        cmd = [wrk, "-t1", f"-c{concurrency}", "--latency", "-s", f.name, base + path]
        subprocess.run([*cmd[:1], "-d1s", *cmd[1:]], check=True, capture_output=True)
        cpu0 = cpu_seconds(server)
        out = subprocess.run(
            [*cmd[:1], f"-d{seconds:g}s", "--timeout", "30s", *cmd[1:]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        cpu = cpu_seconds(server) - cpu0
    finally:
        os.unlink(f.name)
    pct = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.M))
    done = re.search(r"(\d+) requests in ([0-9.]+)(\w+),", out)
    if done is None or len(pct) < 2:
        raise SystemExit(f"wrk's output has no latency distribution:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad[1]) if bad else 0) + (sum(int(n) for n in sock.groups()) if sock else 0)
    took = _ms(done[2] + done[3]) / 1e3
    n = int(done[1])
    return Figure(path, n, errors, took, _ms(pct["50"]), _ms(pct["99"]), 1e6 * cpu / max(n, 1))


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The worker for ``?wait=``, started only for it: while the other routes are
    measured it would be running their jobs on the same two cores."""
    return start(
        [
            sys.executable,
            "-m",
            "workhorse",
            "worker",
            "bench.http_app:app",
            "--queues",
            "default:50",
            "--log-level",
            "warning",
        ],
        env,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="redis://127.0.0.1:6379/0?prefix=benchhttp")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--no-write", action="store_true", help="print, do not write the page")
    p.add_argument("--wrk", action="store_true", help="load from wrk, not Python clients")
    args = p.parse_args(argv)
    wrk = ensure_wrk() if args.wrk else None
    args.load_before = os.getloadavg()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKHORSE_")}
    env.update(WORKHORSE_URL=args.url, PYTHONPATH=str(ROOT))
    asgi = orjson.loads(
        subprocess.run(
            [sys.executable, "-m", "bench.http_asgi", args.url],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    )
    for path, us in asgi.items():
        print(f"in-process {path:30} {us:6.0f} us CPU/request", flush=True)
    port = free_port()
    server = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.http_app:api",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env,
    )
    base = f"http://127.0.0.1:{port}"
    worker: subprocess.Popen[bytes] | None = None
    figures: list[tuple[str, Figure]] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        for name, path in SCENARIOS:
            if "wait=" in path and worker is None:
                # The backlog the enqueue run left would hold up every ?wait= behind it.
                httpx.delete(f"{base}/api/queues/default/jobs?state=queued&keep=0", timeout=60)
                worker = start_worker(env)
                until = time.monotonic() + 60
                while not httpx.get(f"{base}/api/workers").json():  # up and consuming
                    if time.monotonic() > until:
                        raise SystemExit("the worker did not start")
                    time.sleep(0.2)
            if wrk is not None:
                fig = wrk_load(wrk, base, path, args.seconds, args.concurrency, server.pid)
            else:
                cpu0 = cpu_seconds(server.pid)
                fig = asyncio.run(load(base, path, args.seconds, args.concurrency))
                # The warm-up requests are in the CPU time too: count them.
                fig.server_cpu_us = (
                    1e6 * (cpu_seconds(server.pid) - cpu0) / (fig.requests + args.concurrency)
                )
            figures.append((name, fig))
            print(
                f"{name:36} {fig.rate:9,.0f} req/s  p50 {fig.p50_ms:7.2f} ms  "
                f"p99 {fig.p99_ms:7.2f} ms  server CPU {fig.server_cpu_us:6.0f} us/req  "
                f"errors {fig.errors}",
                flush=True,
            )
    finally:
        for proc in (server, worker):
            if proc is not None:
                proc.terminate()
                proc.wait(15)
    if not args.no_write:
        write(figures, asgi, args)
    return 0


def write(
    figures: list[tuple[str, Figure]], asgi: dict[str, float], args: argparse.Namespace
) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    plain = figures[0][1]
    rows = [
        "| route | requests/s | p50 ms | p99 ms | server CPU µs/request | CPU vs plain | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, f in figures:
        rows.append(
            f"| {name} | {f.rate:,.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | "
            f"{f.server_cpu_us:,.0f} | {f.server_cpu_us / plain.server_cpu_us:.2f}x | "
            f"{f.errors} |"
        )
    store = args.url.split("://")[0]
    generator = (
        f"wrk (native, one thread, {args.concurrency} connections, after a 1 s warm-up)"
        if args.wrk
        else f"{args.concurrency} httpx clients in one process"
    )
    caveat = (
        "- wrk is native code on the same two cores as the server, the worker and the "
        "store: requests/s is what one uvicorn worker serves while sharing them. "
        if args.wrk
        else "- The load generator is Python on the same two cores as the server and the "
        "store, so requests/s and latency are a floor for the server, not its ceiling. "
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    PAGE.write_text(
        "# Benchmarks: HTTP\n\n"
        f"Written by `python -m bench.http --url {store}://... --seconds {args.seconds:g} "
        f"--concurrency {args.concurrency}{' --wrk' if args.wrk else ''}` on {when} at "
        f"commit {commit}: one uvicorn worker "
        "process serving `bench/http_app.py`, one `workhorse worker` (queue default, 50 at "
        "once) started for the `?wait=` run only (after the enqueue run's backlog is "
        f"deleted), and the load generator ({generator}) on loopback, all on this "
        f"machine ({os.cpu_count()} CPUs, {platform.platform()}), shared with other work "
        f"(load average {args.load_before:.1f} at the start of the run, "
        f"{os.getloadavg()[0]:.1f} at the end). Each request posts `{{}}`.\n\n"
        + "\n".join(rows)
        + "\n\n"
        "In-process, through ASGI with no socket and no load generator (`bench/http_asgi.py`, "
        "16 requests in flight, the same store): the CPU time per request of this process, "
        "the figure least moved by other work on the machine.\n\n"
        "| route | CPU µs/request | vs plain |\n| --- | ---: | ---: |\n"
        + "".join(
            f"| `{path}` | {us:,.0f} | {us / asgi['/plain']:.2f}x |\n" for path, us in asgi.items()
        )
        + "\n"
        "- *http-mode no-op*: the route validates the body, writes the call's job record "
        "(enqueue on the process's private queue, claim, finish: three round trips to the "
        "store) and answers the result; the plain route does none of it.\n"
        "- *POST /api/tasks/noop/jobs*: one enqueue round trip; *?wait=5*: the enqueue, "
        "the worker's claim, run and finish, and the server's wait for the finish.\n"
        + caveat
        + "*server CPU µs/request* (the uvicorn process's user+system time over the requests "
        "it served) is the figure that does not depend on the generator: the cost of a "
        "route, and the one the issue's 1.5x target compares.\n"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_bytes(
        orjson.dumps(
            {
                "when": when,
                "commit": commit,
                "store": store,
                "in_process_cpu_us": asgi,
                "figures": {n: f.__dict__ | {"rate": f.rate} for n, f in figures},
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
