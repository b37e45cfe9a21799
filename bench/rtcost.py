"""``python -m bench.rtcost``: the memory store's run-and-await round trip in counts the
machine's load does not move: instructions (valgrind callgrind) and Python opcodes per
``app.run()`` of a no-op with an in-process worker (as bench's ``roundtrip`` measures it).

Instructions: one process runs N round trips after one warm-up, another none; both under
callgrind with ``PYTHONHASHSEED=0`` and the cyclic GC off (one full collection is ~10M
instructions and falls in a short window or not); the difference over N is printed.
``--base REV`` measures that commit's tree too (exported with ``git archive``, this
tree's bench/ in it), the sides alternated. ``--opcodes`` counts the Python opcodes each
function executes per round trip instead (``sys.settrace``), and with ``--base`` prints
the functions whose counts differ. ``--store sqlite`` runs the same on a fresh SQLite file
(its thread's instructions counted too; the worker still in the process).

    python -m bench.rtcost --n 1000 --base 5da9aea --repeat 2
    python -m bench.rtcost --opcodes --n 200 --base 5da9aea
    python -m bench.rtcost --store sqlite --n 300 --base 9942674
    python -m bench.rtcost --cpu --n 5000 --repeat 10 --base 5da9aea

``--cpu``: the process's CPU time per round trip (the worker is in it), no valgrind, the
cyclic GC on; the sides alternate, the first changing each round. Less moved by other
processes than the latency, not as little as the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from bench.ab import export
from bench.measure import ROOT
from bench.tasks import NOOP, QUEUE, make_app

_COUNTS: Counter[str] = Counter()
_STORE = "memory"
_TIMES: list[float] = []  # CPU and wall seconds of the last run's round trips


def _where(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    cut = path.rfind("/workhorse/")
    short = path[cut + 1 :] if cut >= 0 else "/".join(path.split("/")[-2:])
    return f"{short} {code.co_qualname}"  # no line number: it moves between commits


def _tracer(frame: FrameType, event: str, arg: Any) -> Any:
    frame.f_trace_opcodes = True
    if event == "opcode":
        _COUNTS[_where(frame)] += 1
    return _tracer


async def _round_trips(n: int) -> None:
    folder = tempfile.mkdtemp(prefix="workhorse-rtcost-")
    url = f"sqlite:///{folder}/rt.db" if os.environ.get("RTCOST_STORE") == "sqlite" else "memory://"
    try:
        await _on(url, n)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _on(url: str, n: int) -> None:
    app = make_app(url)
    async with app:
        worker = app.worker(queues={QUEUE: 10})
        running = asyncio.create_task(worker.run())
        task = app.get_task(NOOP)
        await app.run(task, timeout=30)  # warm-up: the worker started, every path taken
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            await app.run(task, timeout=30)
        _TIMES[:] = [time.process_time() - cpu, time.perf_counter() - wall]
        worker.stop()
        await running


def _traced(n: int) -> None:
    """The whole process's run under the tracer (set-up and shutdown too: a run of none
    is subtracted)."""
    sys.settrace(_tracer)
    try:
        asyncio.run(_round_trips(n))
    finally:
        sys.settrace(None)


def _child(n: int, opcodes: bool, out: str | None, cpu: bool) -> None:
    if cpu:  # the process's CPU time, the cyclic GC on as a user has it
        asyncio.run(_round_trips(n))
        print(json.dumps({"cpu_us": _TIMES[0] / n * 1e6, "wall_us": _TIMES[1] / n * 1e6}))
        return
    gc.disable()
    if opcodes:
        # Counted twice (n and none) in the same way, the difference per round trip.
        _traced(0)
        base = Counter(_COUNTS)
        _COUNTS.clear()
        _traced(n)
        diff = {k: (_COUNTS[k] - base.get(k, 0)) / n for k in set(_COUNTS) | set(base)}
        assert out is not None
        Path(out).write_text(
            "\n".join(f"{v:.3f}\t{k}" for k, v in sorted(diff.items(), key=lambda kv: -kv[1]))
        )
        return
    asyncio.run(_round_trips(n))


def _env(tree: Path | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": "0", "RTCOST_STORE": _STORE}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join((str(tree / "src"), str(tree)))
    else:
        env["PYTHONPATH"] = os.pathsep.join((str(ROOT / "src"), str(ROOT)))
    return env


def instructions(tree: Path | None, n: int) -> int:
    """Instructions callgrind counts in a whole process of ``n`` round trips."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.rtcost",
            "--child",
            str(n),
        ]
        subprocess.run(cmd, env=_env(tree), check=True, capture_output=True, cwd=ROOT)
        for line in Path(out).read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def per_round_trip(tree: Path | None, n: int) -> float:
    return (instructions(tree, n) - instructions(tree, 0)) / n


def cpu_times(tree: Path | None, n: int) -> dict[str, float]:
    """CPU and wall µs per round trip in a process of ``n`` (no valgrind)."""
    cmd = [sys.executable, "-m", "bench.rtcost", "--child", str(n), "--cpu"]
    done = subprocess.run(cmd, env=_env(tree), check=True, capture_output=True, cwd=ROOT)
    figures: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


def opcode_table(tree: Path | None, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "opcodes.tsv")
        cmd = [sys.executable, "-m", "bench.rtcost", "--child", str(n), "--opcodes", "--out", out]
        subprocess.run(cmd, env=_env(tree), check=True, cwd=ROOT)
        table = {}
        for line in Path(out).read_text().splitlines():
            value, where = line.split("\t", 1)
            table[where] = float(value)
        return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="round trips counted")
    parser.add_argument("--base", help="a commit to measure beside this tree")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per side")
    parser.add_argument("--opcodes", action="store_true", help="Python opcodes by function")
    parser.add_argument(
        "--store", choices=("memory", "sqlite"), default="memory", help="sqlite: a fresh file"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="CPU µs per round trip instead, rounds alternated"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global _STORE
    _STORE = args.store
    if args.child is not None:
        _child(args.child, args.opcodes, args.out, args.cpu)
        return
    with tempfile.TemporaryDirectory() as folder:
        sides: list[tuple[str, Path | None]] = [("tree", None)]
        if args.base:
            sides.insert(0, (args.base, export(args.base, Path(folder))))
        if args.opcodes:
            tables = {name: opcode_table(tree, args.n) for name, tree in sides}
            for name, table in tables.items():
                print(f"{name}: {sum(table.values()):,.1f} opcodes per round trip")
            if args.base:
                old, new = tables[args.base], tables["tree"]
                rows = [(new.get(k, 0.0) - old.get(k, 0.0), k) for k in set(old) | set(new)]
                for delta, where in sorted(rows, key=lambda r: -abs(r[0])):
                    if abs(delta) >= 0.5:
                        print(f"{delta:+8.1f}  {where}")
            else:
                for where, value in list(tables["tree"].items())[:40]:
                    print(f"{value:8.1f}  {where}")
            return
        if args.cpu:
            got: dict[str, list[float]] = {name: [] for name, _ in sides}
            for r in range(args.repeat):
                for name, tree in sides if r % 2 == 0 else sides[::-1]:
                    figures = cpu_times(tree, args.n)
                    got[name].append(figures["cpu_us"])
                    cpu, wall = figures["cpu_us"], figures["wall_us"]
                    print(f"{name}: {cpu:.1f} µs CPU, {wall:.1f} µs wall per round trip")
            for name, values in got.items():
                print(f"{name}: median {statistics.median(values):.1f} µs CPU per round trip")
            return
        for _ in range(args.repeat):
            for name, tree in sides:
                print(f"{name}: {per_round_trip(tree, args.n):,.0f} instructions per round trip")


if __name__ == "__main__":
    main()
