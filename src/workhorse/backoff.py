"""How long a failed attempt waits before the next: fixed, exponential with jitter, custom."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from workhorse.errors import ConfigError


class Backoff(Protocol):
    def delay(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""


def check_seconds(value: float, what: str) -> float:
    """A delay the stores can hold: a finite number >= 0 (``inf`` or NaN would be written
    into a job's record and its events, where nothing can read it back)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Fixed:
    seconds: float = 1.0

    def __post_init__(self) -> None:
        check_seconds(self.seconds, "Fixed backoff seconds")

    def delay(self, attempt: int, error: BaseException | None) -> float:
        return self.seconds


@dataclass(frozen=True, slots=True)
class Exponential:
    """``base * factor ** (attempt - 1)`` capped at ``cap``, with full jitter by default
    so that jobs failing together do not retry together."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        check_seconds(self.base, "Exponential backoff base")
        check_seconds(self.cap, "Exponential backoff cap")
        if check_seconds(self.factor, "Exponential backoff factor") < 1:
            raise ConfigError(f"Exponential backoff factor must be >= 1, got {self.factor!r}")

    def delay(self, attempt: int, error: BaseException | None) -> float:
        try:
            raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        except OverflowError:  # a late attempt of many: the cap holds
            raw = self.cap
        return random.uniform(raw / 2, raw) if self.jitter else raw


@dataclass(frozen=True, slots=True)
class Custom:
    fn: Callable[[int, BaseException | None], float]

    def delay(self, attempt: int, error: BaseException | None) -> float:
        return next_delay(self.fn(attempt, error))


def next_delay(value: float) -> float:
    """A backoff's answer, refused unless the stores can hold it (the worker then falls
    back to the default backoff)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"a backoff returned {value!r}; it must be a finite number of seconds")
    return max(0.0, float(value))


BackoffSpec: TypeAlias = (
    Backoff | float | int | str | Callable[[int, BaseException | None], float] | None
)


def make_backoff(spec: BackoffSpec) -> Backoff:
    """Accept ``None`` (exponential), a number of seconds (fixed), ``"fixed"``,
    ``"exponential"``, a Backoff object, or ``fn(attempt, error) -> seconds``."""
    if spec is None or spec == "exponential":
        return Exponential()
    if spec == "fixed":
        return Fixed()
    if isinstance(spec, bool):
        raise ConfigError("backoff must be seconds, 'fixed', 'exponential' or a function")
    if isinstance(spec, int | float):
        return Fixed(check_seconds(spec, "backoff"))
    if isinstance(spec, str):
        raise ConfigError(
            f"unknown backoff {spec!r}; valid: 'fixed', 'exponential', "
            "seconds, a Backoff object or fn(attempt, error) -> seconds"
        )
    if hasattr(spec, "delay"):
        return spec
    if callable(spec):
        return Custom(spec)
    raise ConfigError(f"invalid backoff {spec!r}")
