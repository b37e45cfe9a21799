"""Summarise a cProfile dump of a worker run as costs per job."""

from __future__ import annotations

import os
import pstats
import re
from collections import Counter
from typing import Any

from bench.measure import ROOT, SPY_RATE

_SRC = str(ROOT / "src" / "workhorse") + os.sep


def _where(filename: str, line: int, func: str) -> str:
    if filename.startswith(_SRC):
        return f"workhorse/{filename[len(_SRC) :]}:{line} `{func}`"
    if filename == "~":  # a C function
        return f"`{func}`"
    parts = filename.split(os.sep)
    short = os.sep.join(parts[-2:]) if len(parts) > 1 else filename
    return f"{short}:{line} `{func}`"


def load(path: str) -> list[tuple[str, bool, int, float, float]]:
    """(where, is_workhorse, calls, own seconds, total seconds) per function."""
    loaded: Any = pstats.Stats(path)  # its .stats table is not in typeshed
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = loaded.stats
    rows = []
    for (filename, line, func), (_cc, calls, own, total, _callers) in stats.items():
        rows.append((_where(filename, line, func), filename.startswith(_SRC), calls, own, total))
    return rows


def summary(path: str, jobs: int, top: int = 15) -> list[str]:
    """Markdown: the costliest functions overall and the costliest workhorse functions."""
    # Time blocked in epoll is waiting, not work: leave it out of the shares.
    rows = [r for r in load(path) if "select.epoll" not in r[0]]
    total_own = sum(r[3] for r in rows)
    wh_own = sum(r[3] for r in rows if r[1])
    lines = [
        f"Profiled total {total_own / jobs * 1e6:,.0f} µs per job (waiting in epoll left "
        f"out); workhorse's own code "
        f"{wh_own / jobs * 1e6:,.0f} µs ({wh_own / total_own:.0%}).",
        "",
        "| function | calls/job | own µs/job | total µs/job |",
        "| --- | --: | --: | --: |",
    ]
    for where, _wh, calls, own, total in sorted(rows, key=lambda r: -r[3])[:top]:
        lines.append(
            f"| {where} | {calls / jobs:.2f} | {own / jobs * 1e6:.1f} | {total / jobs * 1e6:.1f} |"
        )
    lines += [
        "",
        "workhorse functions by total time per job:",
        "",
        "| function | calls/job | own µs/job | total µs/job |",
        "| --- | --: | --: | --: |",
    ]
    mine = sorted((r for r in rows if r[1]), key=lambda r: -r[4])[:top]
    for where, _wh, calls, own, total in mine:
        lines.append(
            f"| {where} | {calls / jobs:.2f} | {own / jobs * 1e6:.1f} | {total / jobs * 1e6:.1f} |"
        )
    return lines


# -- py-spy ----------------------------------------------------------------------------
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
AREAS = (
    ("workhorse/worker/", "workhorse worker"),
    ("workhorse/backends/", "workhorse backend"),
    ("workhorse/", "workhorse app, task, codec, context"),
    ("redis/", "redis-py"),
    ("psycopg", "psycopg"),
    ("sqlite3/", "sqlite3"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("concurrent/", "threads and queues"),
    ("threading.py", "threads and queues"),
    ("queue.py", "threads and queues"),
)


def _frame(raw: str) -> tuple[str, str]:
    m = _FRAME.match(raw)
    if m is None:
        return raw, ""
    return f"{m['func']} ({m['file']})", m["file"]


def _area(file: str) -> str:
    for marker, area in AREAS:
        if marker in file:
            return area
    return "other"


# Leaf frames that wait rather than work. py-spy's --nonblocking mode cannot always tell
# an idle thread, so these are left out of the shares (and counted apart).
_WAITING = (
    "EpollSelector.select (selectors.py)",
    "Condition.wait (threading.py)",
    "_worker (concurrent/futures/thread.py)",
    "Queue.get (queue.py)",
)


def spy_summary(path: str, jobs: int, cpu_us_per_job: float, top: int = 15) -> list[str]:
    """Markdown from py-spy's raw (collapsed) stacks. Shares of the working samples are
    turned into µs per job with the CPU time the same run measured, so they add up to it.
    Samples of the harness itself (the child's own loop and its final counts) are dropped."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = waiting = harness = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_frame(fr) for fr in stack.split(";")]
            # The harness's own coroutine (asyncio.run's main() sits under every stack).
            if any(
                name.startswith(("process (", "serve (")) and file.endswith("child.py")
                for name, file in frames
            ):
                harness += n
                continue
            if frames[-1][0] in _WAITING:
                waiting += n
                continue
            total += n
            leaf, leaf_file = frames[-1]
            own[leaf] += n
            areas[_area(leaf_file)] += n
            for name in {name for name, _ in frames}:
                inclusive[name] += n
    if not total:
        return ["py-spy recorded no samples."]

    def us(n: int) -> str:
        return f"{n / total * cpu_us_per_job:.1f}"

    lines = [
        f"{total:,} working samples at {SPY_RATE:,} Hz (and {waiting:,} waiting in epoll "
        f"or idle threads, {harness:,} in the harness, left out); the worker spent "
        f"{cpu_us_per_job:.1f} µs of CPU per job in this run, shared out below by the "
        "working samples.",
        "",
        "| where (leaf frame) | share | µs/job |",
        "| --- | --: | --: |",
    ]
    for area, n in areas.most_common():
        lines.append(f"| {area} | {n / total:.0%} | {us(n)} |")
    lines += ["", "| function (own time) | share | µs/job |", "| --- | --: | --: |"]
    for name, n in own.most_common(top):
        lines.append(f"| `{name}` | {n / total:.1%} | {us(n)} |")
    lines += [
        "",
        "| workhorse function (with what it calls) | share | µs/job |",
        "| --- | --: | --: |",
    ]
    mine = [(name, n) for name, n in inclusive.most_common() if "workhorse/" in name]
    for name, n in mine[:top]:
        lines.append(f"| `{name}` | {n / total:.1%} | {us(n)} |")
    return lines
