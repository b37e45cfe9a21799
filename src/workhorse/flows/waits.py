"""Waits before a step: a delay, a cron time, or a signal matched by a key, the last with
a timeout and an action on timeout (fail the run, continue without the signal, or retry:
wait as long again).

A signal is stored under its name and key before the waits it resolves are looked up, so
one that arrives before its wait starts is found when the wait starts; a wait is resolved
once, by whichever of its signal and its timer claims it first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from workhorse.cron import CronSpec, parse_cron
from workhorse.errors import ConfigError
from workhorse.settings import check_name

OnTimeout = Literal["fail", "continue", "retry"]
ON_TIMEOUT = ("fail", "continue", "retry")
WAIT_KEYS = ("delay", "cron", "signal", "key", "timeout", "on_timeout")
# The task that ends a wait for a signal when its timeout passes (registered once needed).
TIMER_TASK = "workhorse.flow_timer"


@dataclass(frozen=True, slots=True)
class Wait:
    delay: float | None = None
    cron: CronSpec | None = None
    signal: str | None = None
    key: str | Callable[[Any], Any] | None = None  # a field of the input, or input -> key
    timeout: float | None = None
    on_timeout: OnTimeout = "fail"

    def key_of(self, data: Any) -> str:
        """The key a signal must carry to resume a wait on this input."""
        if self.key is None:
            return ""
        if callable(self.key):
            value = self.key(data)
        elif isinstance(data, Mapping) and self.key in data:
            value = data[self.key]
        else:
            raise ConfigError(
                f"wait for signal {self.signal!r}: the step's input has no field {self.key!r} "
                "to key it by; pass key=<field> present in the input, or key=<function>"
            )
        return str(value)


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"wait {what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def make_wait(spec: Any) -> Wait | None:
    """``wait={"delay": 60}``, ``{"cron": "0 9 * * *"}`` or ``{"signal": "paid", "key":
    "order_id", "timeout": 3600, "on_timeout": "fail"}``."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ConfigError(
            "wait must be a dict: {'delay': s}, {'cron': pattern} or {'signal': name, 'key': "
            "field, 'timeout': s, 'on_timeout': 'fail' | 'continue' | 'retry'}"
        )
    unknown = sorted(set(spec) - set(WAIT_KEYS))
    if unknown:
        raise ConfigError(f"wait: unknown {unknown}; valid: {', '.join(WAIT_KEYS)}")
    kinds = [k for k in ("delay", "cron", "signal") if spec.get(k) is not None]
    if len(kinds) != 1:
        raise ConfigError("wait takes exactly one of delay=, cron= or signal=")
    if kinds[0] != "signal" and any(spec.get(k) is not None for k in ("key", "timeout")):
        raise ConfigError("wait: key= and timeout= go with signal=")
    on_timeout = spec.get("on_timeout", "fail")
    if on_timeout not in ON_TIMEOUT:
        raise ConfigError(f"wait on_timeout must be one of {ON_TIMEOUT}, got {on_timeout!r}")
    key = spec.get("key")
    if key is not None and not (isinstance(key, str) or callable(key)):
        raise ConfigError("wait key must be a field name of the input or a function input -> key")
    return Wait(
        delay=None if spec.get("delay") is None else _seconds(spec["delay"], "delay"),
        cron=None if spec.get("cron") is None else parse_cron(spec["cron"]),
        signal=None if spec.get("signal") is None else check_name(spec["signal"], "signal"),
        key=key,
        timeout=None if spec.get("timeout") is None else _seconds(spec["timeout"], "timeout"),
        on_timeout=on_timeout,
    )
