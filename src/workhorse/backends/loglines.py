"""A job's log lines within the caps (``max_log_lines``, ``max_log_bytes``): the store keeps
the newest lines and counts the older ones it dropped; readers see that count as one line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

MAX_LOG_LINES = 1_000
MAX_LOG_BYTES = 256 * 1024


def line_size(line: dict[str, Any]) -> int:
    """The line's size as the store holds it (compact JSON)."""
    try:
        return len(orjson.dumps(line, default=repr, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        return len(repr(line))


def overflow(sizes: Sequence[int], max_lines: int, max_bytes: int) -> int:
    """How many of the oldest lines (their sizes, oldest first) go so the rest fit."""
    total = sum(sizes)
    drop = max(0, len(sizes) - max_lines)
    total -= sum(sizes[:drop])
    while drop < len(sizes) and total > max_bytes:
        total -= sizes[drop]
        drop += 1
    return drop


def kept(
    lines: Sequence[dict[str, Any]], max_lines: int, max_bytes: int
) -> tuple[list[dict[str, Any]], int]:
    """The newest of ``lines`` within the caps, and how many older ones were dropped."""
    drop = overflow([line_size(line) for line in lines], max_lines, max_bytes)
    return list(lines[drop:]), drop


def shown(lines: list[dict[str, Any]], dropped: int) -> list[dict[str, Any]]:
    """The lines as readers see them: with a first line saying how many were dropped."""
    if not dropped:
        return lines
    notice = {
        "at": lines[0].get("at", 0) if lines else 0,
        "level": "warning",
        "message": f"{dropped} earlier log line(s) of this job were dropped: it passed "
        "max_log_lines or max_log_bytes",
        "fields": {"dropped": dropped},
    }
    return [notice, *lines]
