"""Waits before or after a step: a delay, a cron time, a signal matched by a key, or a
webhook (a signal addressed to the waiting step of one run, delivered over HTTP); the last
two with a timeout and an action on timeout (fail the run, continue without the signal, or
retry: before a step, wait as long again; after it, run the step again).

A wait before a step holds back its job; a wait after it holds back its completion (what
the step's subscribers are fired with), once its handler returned.

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
WAIT_KEYS = ("delay", "cron", "signal", "webhook", "key", "timeout", "on_timeout")
WEBHOOK_KEYS = ("signed",)
PHASES = ("before", "after")
# The signal a webhook wait is resolved by; its key names the run, generation and step.
WEBHOOK_SIGNAL = "webhook"
# The task that ends a wait for a signal when its timeout passes (registered once needed).
TIMER_TASK = "workhorse.flow_timer"


@dataclass(frozen=True, slots=True)
class Webhook:
    """``signed``: the delivery must carry a Standard Webhooks signature by one of the
    ``webhook_secrets`` (else the caller needs a write token)."""

    signed: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    delay: float | None = None
    cron: CronSpec | None = None
    signal: str | None = None
    key: str | Callable[[Any], Any] | None = None  # a field of the input, or input -> key
    timeout: float | None = None
    on_timeout: OnTimeout = "fail"
    webhook: Webhook | None = None

    @property
    def for_signal(self) -> bool:
        """Resolved by a signal (or a webhook); else by its timer alone (a delay, a cron time)."""
        return self.signal is not None or self.webhook is not None

    @property
    def signal_name(self) -> str:
        """The signal that resolves the wait (a webhook's is the same for every step; a
        delay's or a cron time's is none)."""
        if self.webhook is not None:
            return WEBHOOK_SIGNAL
        return "" if self.signal is None else self.signal

    def key_of(self, data: Any, run: str = "", gen: int = 0, step: str = "") -> str:
        """The key a signal must carry to resume a wait on this data (the step's input
        before it, its output after it)."""
        if self.webhook is not None:
            return webhook_key(run, gen, step)
        if self.key is None or not self.for_signal:
            return ""
        if callable(self.key):
            value = self.key(data)
        elif isinstance(data, Mapping) and self.key in data:
            value = data[self.key]
        else:
            raise ConfigError(
                f"wait for signal {self.signal!r}: the step's data has no field {self.key!r} "
                "to key it by; pass key=<field> present in the input, or key=<function>"
            )
        return str(value)


def webhook_key(run: str, gen: int, step: str) -> str:
    return f"{run}:{gen}:{step}"


def after_name(step: str) -> str:
    """How a wait after ``step`` names it in its webhook key (apart from a wait before it)."""
    return f"{step}:after"


def _webhook(spec: Any) -> Webhook:
    if spec is True or spec == {}:
        return Webhook()
    if not isinstance(spec, Mapping) or set(spec) - set(WEBHOOK_KEYS):
        raise ConfigError(
            f"wait webhook= must be a dict with {', '.join(WEBHOOK_KEYS)} (e.g. "
            "{'signed': True} to require a Standard Webhooks signature), got "
            f"{spec!r}"
        )
    signed = spec.get("signed", False)
    if not isinstance(signed, bool):
        raise ConfigError(f"wait webhook signed= must be True or False, got {signed!r}")
    return Webhook(signed)


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"wait {what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def make_wait(spec: Any) -> Wait | None:
    """``wait={"delay": 60}``, ``{"cron": "0 9 * * *"}``, ``{"signal": "paid", "key":
    "order_id", "timeout": 3600, "on_timeout": "fail"}`` or ``{"webhook": {"signed":
    True}, "timeout": 3600}``."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ConfigError(
            "wait must be a dict: {'delay': s}, {'cron': pattern} or {'signal': name, 'key': "
            "field, 'timeout': s, 'on_timeout': 'fail' | 'continue' | 'retry'} or "
            "{'webhook': {'signed': True}, 'timeout': s}"
        )
    unknown = sorted(set(spec) - set(WAIT_KEYS))
    if unknown:
        raise ConfigError(f"wait: unknown {unknown}; valid: {', '.join(WAIT_KEYS)}")
    kinds = [k for k in ("delay", "cron", "signal", "webhook") if spec.get(k) is not None]
    if len(kinds) != 1:
        raise ConfigError("wait takes exactly one of delay=, cron=, signal= or webhook=")
    if kinds[0] == "webhook" and spec.get("key") is not None:
        raise ConfigError("wait: a webhook is addressed to its run and step; drop key=")
    if kinds[0] in ("delay", "cron") and any(spec.get(k) is not None for k in ("key", "timeout")):
        raise ConfigError("wait: key= and timeout= go with signal= (timeout= also webhook=)")
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
        webhook=None if spec.get("webhook") is None else _webhook(spec["webhook"]),
    )


def make_waits(spec: Any) -> tuple[Wait | None, Wait | None]:
    """The waits before and after a step: ``wait={...}`` waits before it, ``wait={"after":
    {...}}`` after it, ``wait={"before": {...}, "after": {...}}`` both."""
    if isinstance(spec, Mapping) and spec and set(spec) <= set(PHASES):
        return make_wait(spec.get("before")), make_wait(spec.get("after"))
    if isinstance(spec, Mapping) and set(spec) & set(PHASES):
        raise ConfigError(
            "wait: put the wait's options inside before= or after=, e.g. {'after': "
            "{'signal': 'paid', 'key': 'order_id'}}, or leave both out for a wait before"
        )
    return make_wait(spec), None
