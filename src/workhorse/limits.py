"""Limits that hold across every worker: concurrency per key and rate per key.

Both are enforced through the store (its key-value primitives), not per process, so three
workers on three machines share one budget. A job that meets a full limit goes back to its
queue for a moment without spending an attempt."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workhorse import codec
from workhorse.errors import ConfigError, PayloadError

_PERIODS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    limit: int
    period: float

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


def parse_rate(spec: str | Rate) -> Rate:
    """``"100/m"``, ``"5/s"``, ``"1000/h"``, ``"10/30s"``."""
    if isinstance(spec, Rate):
        return spec
    m = _RATE.match(str(spec).lower())
    if m is None or m.group(3) not in _PERIODS or int(m.group(1)) < 1:
        raise ConfigError(
            f"invalid rate {spec!r}: write COUNT/PERIOD such as '100/m', '5/s', '1000/h' or "
            "'10/30s' (periods: s, m, h, d)"
        )
    scale = float(m.group(2)) if m.group(2) else 1.0
    if scale <= 0:
        raise ConfigError(f"invalid rate {spec!r}: the period must be > 0")
    return Rate(int(m.group(1)), scale * _PERIODS[m.group(3)])


KeyFn = Callable[[Any], Any]


def stable_key(value: Any, what: str) -> str:
    """Serialise a key stably (sorted keys) so equal keys always match."""
    try:
        return codec.dumps_sorted(value).decode()
    except TypeError as exc:
        raise PayloadError(
            f"{what} returned {value!r}, which is not JSON-serialisable ({exc}); return a "
            "string, number or a dict/list of them"
        ) from None
