"""Summarise a cProfile dump of a worker run as costs per job."""

from __future__ import annotations

import os
import pstats
from typing import Any

from bench.measure import ROOT

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
    rows = load(path)
    total_own = sum(r[3] for r in rows)
    wh_own = sum(r[3] for r in rows if r[1])
    lines = [
        f"Profiled total {total_own / jobs * 1e6:,.0f} µs per job; workhorse's own code "
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
