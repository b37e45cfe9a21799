"""``python -m bench.idle``: the CPU an idle worker uses, on each backend.

Starts a real ``workhorse worker`` process (every setting at its default) on an empty
store, lets it settle, then reads its CPU time (user + system, all its threads) from
/proc over a window and reports it as a share of one core. Linux only.

python -m bench.idle                              # every backend, 20 s each
python -m bench.idle --backends sqlite,sqlite-poll --seconds 10

``sqlite-poll`` is SQLite with inotify off (``?watch=false``), the path of macOS and of
containers whose folders deliver no inotify events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.measure import DEFAULT_POSTGRES, DEFAULT_REDIS
from workhorse.backends import backend_from_url

KINDS = ("memory", "sqlite", "sqlite-poll", "redis", "postgres")
ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def store_url(kind: str, folder: str) -> str:
    tag = f"whidle{uuid.uuid4().hex[:10]}"
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{folder}/idle.db",
        "sqlite-poll": f"sqlite:///{folder}/idle-poll.db?watch=false",
        "redis": f"{DEFAULT_REDIS}?prefix={tag}",
        "postgres": f"{DEFAULT_POSTGRES}?schema={tag}",
    }[kind]


def cpu_seconds(pid: int) -> float:
    """User + system time of the process (every thread), from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def start_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WORKHORSE_URL": url, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workhorse", "worker", "bench.idle_app:app"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "consuming" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def measure(kind: str, seconds: float, settle: float, folder: str) -> float:
    """The worker's CPU over ``seconds`` of idling, as a share of one core."""
    url = store_url(kind, folder)
    log = Path(folder) / f"{kind}.log"
    proc = start_worker(url, log)
    try:
        wait_ready(proc, log)
        time.sleep(settle)  # start-up work (imports, schema, first beats) is not idling
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        asyncio.run(drop(url))
    return (cpu1 - cpu0) / (wall1 - wall0)


async def drop(url: str) -> None:
    if url.startswith(("memory", "sqlite")):
        return
    backend = backend_from_url(url)
    await backend.open()
    try:
        dropper = getattr(backend, "drop", None)
        if dropper is not None:
            await dropper()
    finally:
        await backend.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(KINDS), help=f"from {', '.join(KINDS)}")
    p.add_argument("--seconds", type=float, default=20.0, help="idle window measured")
    p.add_argument("--settle", type=float, default=3.0, help="seconds skipped after start")
    p.add_argument("--limit", type=float, default=0.01, help="share of a core that fails")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown backend(s) {sorted(unknown)}; valid: {', '.join(KINDS)}")
    over = []
    print("| backend | idle worker CPU (share of one core) |")
    print("|---|---|")
    with tempfile.TemporaryDirectory(prefix="wh-idle-") as folder:
        for kind in kinds:
            share = measure(kind, args.seconds, args.settle, folder)
            print(f"| {kind} | {share * 100:.2f}% |", flush=True)
            if share > args.limit:
                over.append(kind)
    if over:
        print(f"over {args.limit * 100:g}% of a core: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
