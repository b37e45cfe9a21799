"""How long a failed attempt waits before the next: fixed, exponential with jitter, custom."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from workhorse.errors import ConfigError


class Backoff(Protocol):
    def delay(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""


@dataclass(frozen=True, slots=True)
class Fixed:
    seconds: float = 1.0

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

    def delay(self, attempt: int, error: BaseException | None) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return random.uniform(raw / 2, raw) if self.jitter else raw


@dataclass(frozen=True, slots=True)
class Custom:
    fn: Callable[[int, BaseException | None], float]

    def delay(self, attempt: int, error: BaseException | None) -> float:
        return max(0.0, float(self.fn(attempt, error)))


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
        if spec < 0:
            raise ConfigError(f"backoff seconds must be >= 0, got {spec}")
        return Fixed(float(spec))
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
