"""``python -m bench.sqlite_ops``: SQLite's work per enqueued job, counted in its VM
instructions (a progress handler called at every one), which no load on the machine moves.

python -m bench.sqlite_ops                                   # this tree
python -m bench.sqlite_ops --drop wh_events_job              # without one index
PYTHONPATH=/tmp/base/src python -m bench.sqlite_ops          # a tree exported with git archive

Printed per job: instructions for ``enqueue_many`` in calls of 1,000 and for ``enqueue`` one
at a time, the bytes the process wrote for one ``enqueue`` (``wchar`` of /proc/self/io: the
WAL's pages and frame headers of each commit), and the Python calls the caller's thread made
for one ``enqueue``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import workhorse
from workhorse import Workhorse

BULK, ONE = 20_000, 2_000


def written() -> int:
    """Bytes this process has passed to write() so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


class Counted:
    """Counts the VM instructions of every connection opened while it is installed."""

    def __init__(self) -> None:
        self.ops = 0
        self._connect = sqlite3.connect

    def install(self) -> None:
        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn: sqlite3.Connection = self._connect(*args, **kwargs)
            conn.set_progress_handler(self._tick, 1)
            return conn

        sqlite3.connect = connect  # type: ignore[assignment]

    def _tick(self) -> int:
        self.ops += 1
        return 0


async def measure(path: Path, drop: list[str], counted: Counted) -> dict[str, float]:
    async with Workhorse(f"sqlite:///{path}"):
        pass  # the schema
    conn = sqlite3.connect(path)
    for index in drop:
        conn.execute(f"DROP INDEX {index}")
    conn.commit()
    conn.close()
    app = Workhorse(f"sqlite:///{path}")

    @app.task
    async def noop(n: int) -> int:
        return n

    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event == "call"

    async with app:
        await app.enqueue_many("noop", range(1000))  # warm: statements prepared
        counted.ops = 0
        for start in range(0, BULK, 1000):
            await app.enqueue_many("noop", range(start, start + 1000))
        bulk = counted.ops / BULK
        counted.ops, before = 0, written()
        sys.setprofile(profile)
        for i in range(ONE):
            await app.enqueue(noop, i)
        sys.setprofile(None)
        one, wrote = counted.ops / ONE, (written() - before) / ONE
    return {"bulk": bulk, "one": one, "bytes": wrote, "calls": calls / ONE}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--drop", action="append", default=[], help="an index to drop first")
    args = p.parse_args()
    counted = Counted()
    counted.install()
    with tempfile.TemporaryDirectory() as d:
        r = asyncio.run(measure(Path(d) / "wh.db", args.drop, counted))
    where = Path(workhorse.__file__).parents[2]
    print(
        f"{where} (dropped: {', '.join(args.drop) or 'none'}): SQLite VM instructions per job "
        f"{r['bulk']:.1f} in bulk, {r['one']:.1f} one by one; bytes written per enqueue "
        f"{r['bytes']:,.0f}; Python calls per enqueue on the caller's thread {r['calls']:.1f}"
    )


if __name__ == "__main__":
    main()
