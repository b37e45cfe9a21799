"""Cron rules: parsing, validation at definition, and tick arithmetic in a time zone.

Five fields (minute hour day month weekday) or six with seconds first, as node-cron and
BullMQ write them. Parsing is croniter's; we only pin the conventions."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workhorse import codec
from workhorse.errors import ConfigError

if TYPE_CHECKING:
    from croniter import croniter

CatchUp = Literal["once", "skip"]


@dataclass(frozen=True, slots=True)
class CronSpec:
    pattern: str
    data: Any = None
    timezone: str = "UTC"
    catch_up: CatchUp = "once"  # a tick missed while every worker was down: fire once, or skip

    @property
    def seconds_field(self) -> bool:
        return len(self.pattern.split()) == 6

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _iter(self, start: datetime) -> croniter:
        # Imported on the first cron rule: croniter brings dateutil and its time zone
        # modules (about 1 MB of a worker's RSS) that an app without cron never uses.
        from croniter import croniter

        return croniter(
            self.pattern, start.astimezone(self.zone()), second_at_beginning=self.seconds_field
        )

    def next_after(self, t: datetime) -> datetime:
        """The first tick strictly after ``t``."""
        nxt: datetime = self._iter(t).get_next(datetime)
        return nxt.astimezone(UTC)

    def latest_at_or_before(self, t: datetime) -> datetime:
        """The last tick at or before ``t``."""
        # Ticks fall on whole seconds and get_prev is strict: start just past t's second.
        start = t.replace(microsecond=0) + timedelta(seconds=1)
        prev: datetime = self._iter(start).get_prev(datetime)
        return prev.astimezone(UTC)

    def fingerprint(self) -> str:
        return hashlib.sha1(codec.dumps(asdict(self)), usedforsecurity=False).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_cron(spec: str | Mapping[str, Any] | CronSpec) -> CronSpec:
    """``"0 */6 * * *"`` or ``{"pattern": ..., "data": {...}, "timezone": "Europe/Berlin",
    "catch_up": "once" | "skip"}``. Refused here, at definition, with what was wrong."""
    if isinstance(spec, CronSpec):
        out = spec
    elif isinstance(spec, str):
        out = CronSpec(spec)
    elif isinstance(spec, Mapping):
        unknown = set(spec) - {"pattern", "data", "timezone", "catch_up"}
        if unknown or "pattern" not in spec:
            raise ConfigError(
                f"cron needs {{'pattern': ..., 'data': ..., 'timezone': ..., 'catch_up': ...}}; "
                f"got keys {sorted(spec)}"
            )
        out = CronSpec(
            str(spec["pattern"]),
            spec.get("data"),
            str(spec.get("timezone", "UTC")),
            spec.get("catch_up", "once"),
        )
    else:
        raise ConfigError(f"cron must be a pattern string or a dict, got {spec!r}")
    from croniter import croniter

    fields = out.pattern.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(
        out.pattern, second_at_beginning=len(fields) == 6
    ):
        raise ConfigError(
            f"invalid cron pattern {out.pattern!r}: use five fields 'minute hour day month "
            "weekday' (e.g. '0 */6 * * *') or six with seconds first"
        )
    try:
        ZoneInfo(out.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {out.timezone!r}: use an IANA name such as 'Europe/Berlin'"
        ) from None
    if out.catch_up not in ("once", "skip"):
        raise ConfigError(f"catch_up must be 'once' or 'skip', got {out.catch_up!r}")
    codec.encode_payload(out.data, 1 << 20, "cron data")
    return out
