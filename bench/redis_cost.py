"""``python -m bench.redis_cost``: where a Redis job's time goes, on a private server.

python -m bench.redis_cost                          # this tree: figures per measurement
python -m bench.redis_cost --base HEAD~2 --rounds 4 # base and this tree, alternated
python -m bench.redis_cost --scripts                # + each script's server time per call

A private ``redis-server`` (no persistence, nothing else on it) is started so that its
``INFO cpu`` covers this run alone: the server's CPU per job is read before and after each
phase. Per phase: jobs/s (or the round trip's p50), the worker's CPU per job and the
server's. ``--scripts`` logs every command to SLOWLOG (threshold 0) for the per-script
cost, which slows the server, so its runs are for that table only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.ab import export
from bench.measure import BULK_BATCH, ROOT, _Child, _timed_runs, enqueue_concurrent
from bench.tasks import NOOP, QUEUE, make_app

MEASURES = ("noop", "roundtrip", "enqueue_bulk", "enqueue_one", "enqueue_concurrent")
SIZES = {"noop": 10_000, "roundtrip": 500, "enqueue_bulk": 20_000, "enqueue_one": 3_000,
         "enqueue_concurrent": 20_000}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, check=True, text=True
    )
    return out.stdout


def _server_cpu(port: int) -> float:
    info = _cli(port, "INFO", "cpu")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])


def _script_names(tree: Path) -> dict[str, str]:
    """sha -> script name, as ``tree``'s backend loads them (asked of its own scripts module,
    which assembles each from the prelude and the body)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    code = (
        "import json; import workhorse.backends.redis.scripts as m; "
        "names = {s.sha: n for n, s in m.load_script_texts().items()}; "
        "lib = getattr(m, 'load_library', None); "
        "names.update({f: n for n, f in lib().functions.items()} if lib else {}); "
        "print(json.dumps(names))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    if done.returncode != 0:
        return {}  # an older tree: its scripts show by their SHA's first digits
    names: dict[str, str] = orjson.loads(done.stdout)
    return names


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one measurement, in a child interpreter that imports the side's workhorse ----------
def _script_usec(port: int) -> float:
    """Microseconds the server spent inside EVALSHA and FCALL since the last CONFIG
    RESETSTAT (INFO commandstats): the scripts' own time, without the reading and writing
    around them."""
    usec = 0.0
    for line in _cli(port, "INFO", "commandstats").splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_fcall:")):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            usec += float(fields["usec"])
    return usec


async def _phase(port: int, n: int, coro: Any) -> dict[str, Any]:
    s0 = _server_cpu(port)
    _cli(port, "CONFIG", "RESETSTAT")
    figures: dict[str, Any] = await coro
    figures["server_cpu_us"] = (_server_cpu(port) - s0) / n * 1e6
    figures["script_us"] = _script_usec(port) / n  # per job, the enqueue script's own
    return figures


async def _enqueue(url: str, n: int, bulk: bool) -> dict[str, Any]:
    async with make_app(url) as app:
        task = app.get_task(NOOP)
        await app.enqueue(task)  # connect outside the timing
        cpu0, t0 = time.process_time(), time.perf_counter()
        if bulk:
            for start in range(0, n, BULK_BATCH):
                await app.enqueue_many(task, [None] * min(BULK_BATCH, n - start))
        else:
            for _ in range(n):
                await app.enqueue(task)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"rate": n / elapsed, "client_cpu_us": cpu / n * 1e6}


async def _noop(url: str, port: int, n: int) -> dict[str, Any]:
    async with make_app(url) as app:
        for start in range(0, n, BULK_BATCH):
            await app.enqueue_many(NOOP, [None] * min(BULK_BATCH, n - start))
    s0 = _server_cpu(port)
    child = await _Child.start("process", url, concurrency=10, task=NOOP, n=n)
    result = await child.finish()
    if result.get("error"):
        raise RuntimeError(result["error"])
    return {
        "rate": result["n"] / result["seconds"],
        "worker_cpu_us": result["cpu_s"] / result["n"] * 1e6,
        # includes the child's start and stop, a few ms over 10,000 jobs
        "server_cpu_us": (_server_cpu(port) - s0) / result["n"] * 1e6,
    }


async def _roundtrip(url: str, port: int, n: int) -> dict[str, Any]:
    async with make_app(url) as app:
        await app.counts([QUEUE])
    child = await _Child.start("serve", url, concurrency=10)
    try:
        await child.wait_ready()
        s0, w0, c0 = _server_cpu(port), _proc_cpu(child.proc.pid), time.process_time()
        times = await _timed_runs(url, n, 50, lambda _d, _t: None)
        server = _server_cpu(port) - s0
        worker = _proc_cpu(child.proc.pid) - w0
        caller = time.process_time() - c0
    finally:
        await child.stop()
    ms = sorted(t * 1000 for t in times["run"])
    calls = n + 50 + len(times["enqueue"])
    return {
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[int(len(ms) * 0.9)],
        "enqueue_p50_ms": statistics.median(times["enqueue"]) * 1000,
        "wait_p50_ms": statistics.median(times["wait"]) * 1000,
        "server_cpu_us": server / calls * 1e6,
        "worker_cpu_us": worker / calls * 1e6,
        "caller_cpu_us": caller / calls * 1e6,
    }


async def _one(measure: str, url: str, port: int) -> dict[str, Any]:
    n = SIZES[measure]
    if measure == "noop":
        return await _noop(url, port, n)
    if measure == "roundtrip":
        return await _roundtrip(url, port, n)
    if measure == "enqueue_concurrent":
        return await _phase(port, n, enqueue_concurrent(url, n, lambda _d, _t: None))
    return await _phase(port, n, _enqueue(url, n, measure == "enqueue_bulk"))


# -- the driver ---------------------------------------------------------------------------
def _side(tree: Path, measure: str, url: str, port: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tree / "src"), str(tree)))}
    args = [sys.executable, "-m", "bench.redis_cost", "--one", measure, url, str(port)]
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, timeout=900)
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-800:]}
    figures: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return figures


def _slowlog(port: int, names: dict[str, str]) -> dict[str, tuple[int, float]]:
    """Script name -> (calls, mean µs), and the same for plain commands."""
    client = redis.Redis(port=port)
    try:
        entries = client.execute_command("SLOWLOG", "GET", "-1", NEVER_DECODE=True)  # type: ignore[no-untyped-call]
    finally:
        client.close()
    per: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        args = entry[3]
        name = args[0].decode().lower()
        if name in ("evalsha", "fcall"):
            name = names.get(args[1].decode(), args[1].decode()[:8])
        per[name].append(int(entry[2]))
    return {k: (len(v), statistics.fmean(v)) for k, v in per.items()}


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.redis_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--base", help="a commit to compare with, alternated with this tree")
    p.add_argument("--measure", default=",".join(MEASURES), help=f"from: {','.join(MEASURES)}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scripts", action="store_true", help="per-script server time (SLOWLOG)")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        measure, url, port = args.one
        figures = asyncio.run(_one(measure, url, int(port)))
        sys.stdout.write(orjson.dumps(figures).decode() + "\n")
        return
    names = [m for m in args.measure.split(",") if m]
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="workhorse-rcost-"))
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp), "--slowlog-max-len", "1000000"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                _cli(port, "PING")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        sides = {"new": ROOT}
        if args.base:
            (tmp / "base").mkdir()
            sides = {"base": export(args.base, tmp / "base"), "new": ROOT}
        results: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        costs: dict[tuple[str, str], dict[str, tuple[int, float]]] = {}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for name in names:
                for side in order:
                    if args.scripts:
                        _cli(port, "CONFIG", "SET", "slowlog-log-slower-than", "0")
                        _cli(port, "SLOWLOG", "RESET")
                    _cli(port, "FLUSHALL")
                    fig = _side(sides[side], name, url, port)
                    if args.scripts:
                        _cli(port, "CONFIG", "SET", "slowlog-log-slower-than", "-1")
                        costs[(name, side)] = _slowlog(port, _script_names(sides[side]))
                    results[(name, side)].append(fig)
                    shown = {k: round(v, 3) for k, v in fig.items() if isinstance(v, float)}
                    print(f"round {r + 1} {name} {side}: {fig.get('error') or shown}",
                          file=sys.stderr, flush=True)  # fmt: skip
        print(f"\nmedians of {args.rounds} round(s); server: a private redis-server\n")
        print("| measurement | figure | " + " | ".join(sides) + " |")
        print("| --- | --- |" + " --: |" * len(sides))
        for name in names:
            keys = sorted({k for s in sides for f in results[(name, s)] for k in f if k != "error"})
            for key in keys:
                vals = []
                for side in sides:
                    got = [f[key] for f in results[(name, side)] if key in f]
                    vals.append(_fmt(statistics.median(got)) if got else "-")
                print(f"| {name} | {key} | " + " | ".join(vals) + " |")
        for (name, side), table in costs.items():
            print(f"\n{name} ({side}), server time per call (SLOWLOG, last round):\n")
            print("| command or script | calls | µs per call | µs total |")
            print("| --- | --: | --: | --: |")
            for cmd, (calls, mean) in sorted(table.items(), key=lambda kv: -kv[1][0] * kv[1][1]):
                print(f"| {cmd} | {calls} | {mean:.1f} | {calls * mean:,.0f} |")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
