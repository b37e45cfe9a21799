"""Settings: explicit arguments, then ``WORKHORSE_*`` environment variables, then defaults.

Nothing is read at import time: ``Settings.load()`` reads the environment when called.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from workhorse.errors import ConfigError
from workhorse.job import MAX_STALLS

DEFAULT_URL = "sqlite:///.workhorse/workhorse.db"
_PATH = re.compile(r"(/[A-Za-z0-9_.-]+)*")  # a URL path prefix: api_prefix, dashboard_prefix
BUILT_IN_QUEUES = ("default", "priority")
ENV_PREFIX = "WORKHORSE_"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        DEFAULT_URL,
        description="Backend URL: memory://, sqlite:///path, "
        "redis://host:port/db, redis+cluster://host:port,host:port, postgresql://...",
    )
    queues: tuple[str, ...] = Field(
        ("default", "priority"), description="Queues a worker consumes, in claim order"
    )
    known_queues: tuple[str, ...] = Field(
        (),
        description="Queues other workers consume, besides default, priority and this "
        "worker's own: a task naming a queue outside them fails start-up",
    )
    concurrency: int = Field(10, ge=1, description="Jobs run at once per queue by one worker")
    lease: float = Field(30.0, gt=0, description="Seconds a claim lasts before renewal")
    poll_interval: float = Field(1.0, gt=0, description="Longest idle wait between claims")
    reclaim_interval: float = Field(5.0, gt=0, description="Seconds between expired-lease sweeps")
    flow_sweep_interval: float = Field(
        10.0, gt=0, description="Seconds between a worker's checks of running flow runs"
    )
    heartbeat_interval: float = Field(5.0, gt=0, description="Seconds between worker beats")
    shutdown_grace: float = Field(30.0, ge=0, description="Seconds running jobs get on SIGTERM")
    job_timeout: float | None = Field(
        300.0,
        gt=0,
        description="Seconds an attempt of a task that sets no timeout may take (none: "
        "unbounded), so a hung job cannot hold its lease forever",
    )
    max_stalls: int = Field(
        MAX_STALLS,
        ge=0,
        description="Times a job whose worker died (its lease expired) is run again, for "
        "tasks that set no max_stalls; one more death fails it",
    )
    max_payload: int = Field(1 << 20, ge=1, description="Largest encoded payload or result, bytes")
    max_log_lines: int = Field(
        1_000,
        ge=2,
        description="Log lines a job keeps over all its attempts (ctx.log); the oldest "
        "dropped first",
    )
    max_log_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Bytes of log lines a job keeps over all its attempts (as JSON)",
    )
    keep_completed: int | None = Field(
        10_000, ge=0, description="Newest completed jobs kept per queue"
    )
    keep_completed_for: float | None = Field(
        86_400.0, ge=0, description="Seconds completed jobs are kept"
    )
    keep_failed: int | None = Field(
        10_000, ge=0, description="Newest failed, and cancelled, jobs kept per queue"
    )
    keep_failed_for: float | None = Field(
        7 * 86_400.0, ge=0, description="Seconds failed/cancelled jobs are kept"
    )
    embedded_worker: bool | Literal["dev"] = Field(
        True,
        description="Whether app.start_worker() runs a worker "
        "in the app's own process; turn off in production; dev: only when environment "
        "is development",
    )
    environment: Literal["development", "production"] = Field(
        "production",
        description="Where this process runs; `workhorse dev` sets development (decides "
        "embedded_worker=dev)",
    )
    process_pool: int | None = Field(
        None,
        ge=1,
        description="Child processes a worker keeps warm for runtime='process' tasks "
        "(and idle programs per reusable command); default: the worker's total "
        "concurrency, at most one per CPU",
    )
    unknown_task_delay: float = Field(
        5.0,
        ge=0,
        description="Requeue delay for a job whose "
        "task this worker does not know (rolling deploys)",
    )
    unknown_task_window: float = Field(
        600.0, ge=0, description="Seconds after which such a job fails instead"
    )
    hook_group: str = Field(
        "app",
        description="Hook group a listener reads for (its cursors live in the store); "
        "listeners of one group share the events, each group gets every event",
    )
    hook_partitions: int = Field(
        8,
        ge=1,
        le=1024,
        description="Partitions of a new hook group (most listeners that share its work); "
        "fixed when the group is created",
    )
    hook_attempts: int = Field(
        3, ge=1, description="Calls of a failing hook on one event before the event is parked"
    )
    hook_retry_delay: float = Field(
        0.5, ge=0, description="Seconds before a failed hook's second call, doubled per call"
    )
    hook_lease: float = Field(
        10.0,
        gt=0,
        description="Seconds a listener's hold on its partitions lasts unless renewed "
        "(a killed listener's partitions move after this)",
    )
    hook_poll_interval: float = Field(
        0.1, gt=0, description="Longest wait of an idle listener before it reads the log again"
    )
    stats: bool = Field(
        True,
        description="Whether workers count jobs completed and failed, and producers jobs "
        "enqueued, per task and queue in the store (per minute and in total; one write per "
        "key a second), for /metrics and charts",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port a worker serves its own Prometheus figures on (/metrics); none: "
        "not served. Needs pip install 'workhorse[metrics]'",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto",
        description="Event loop of `workhorse worker`: auto (uvloop where it is installed, a "
        "dependency on Linux and macOS; else asyncio), asyncio, or uvloop (an error if it is "
        "missing). uvloop: 5-18% less worker CPU per job, see docs/profiles.md",
    )

    api_prefix: str = Field("/api", description="Path the REST API is served under")
    api_tokens: SecretStr | None = Field(
        None,
        description="Bearer tokens of the HTTP API with their scope, comma-separated, "
        "e.g. write:TOKEN1,read:TOKEN2 (several for rotation); never logged",
    )
    api_open_reads: bool = Field(
        False, description="Whether the HTTP API answers reads (GET) without a token"
    )
    webhook_secrets: SecretStr | None = Field(
        None,
        description="Standard Webhooks signing secrets (whsec_... or raw), comma-separated "
        "for rotation, for routes with auth='webhook' and flows' signed webhook waits",
    )
    webhook_tolerance: float = Field(
        300.0, gt=0, description="Seconds a signed webhook's timestamp may be off from now"
    )

    dashboard_prefix: str = Field("/admin", description="Path the dashboard is served under")
    dashboard_read_only: bool = Field(
        False,
        description="Whether the dashboard hides every action and refuses every write, "
        "whatever the token's scope",
    )
    dashboard_redact: tuple[str, ...] = Field(
        ("password", "token", "secret", "api_key", "authorization"),
        description="Field names (case-insensitive, matched inside names too: db_password) "
        "whose values the dashboard shows as *** in payloads, results and logs",
    )
    dashboard_session: float = Field(
        8 * 3600.0, gt=0, description="Seconds a dashboard login lasts"
    )

    @field_validator("queues", "known_queues", "dashboard_redact", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if value is None:
            return ()  # WORKHORSE_KNOWN_QUEUES="" (the queues setting then asks for one)
        if isinstance(value, str):
            value = [q.strip() for q in value.split(",") if q.strip()]
        return value

    @field_validator("queues", "known_queues")
    @classmethod
    def _check_names(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for name in value:
            check_name(name, "queue")
        if not value and info.field_name == "queues":
            raise ValueError("at least one queue is needed")
        return value

    @field_validator("api_prefix", "dashboard_prefix")
    @classmethod
    def _check_prefix(cls, value: str, info: ValidationInfo) -> str:
        # Python's re, not Field(pattern=...): pydantic-core's regex engine pages in
        # ~0.5 MB of code in every process that builds Settings (docs/profiles.md, rss2).
        if _PATH.fullmatch(value) is None or (not value and info.field_name != "api_prefix"):
            raise ValueError(
                "use a path such as /api or /ops/admin: '/' then letters, digits, '_', "
                "'.' or '-' per part, no trailing '/'"
                + ("" if info.field_name != "api_prefix" else " ('' serves it at the root)")
            )
        return value

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``overrides`` (None means unset), the environment, defaults."""
        env = os.environ if env is None else env
        unknown = set(overrides) - set(cls.model_fields)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {sorted(unknown)}; valid: {sorted(cls.model_fields)}"
            )
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            given = overrides.get(name)
            if given is not None:
                values[name] = given
            elif (raw := env.get(ENV_PREFIX + name.upper())) is not None:
                values[name] = None if raw.lower() in ("none", "") else raw
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")


def check_name(name: str, what: str) -> str:
    """Queue and task names go into keys, URLs and command lines: keep them to a safe
    alphabet, with no '..' (a path step), and no leading '.' or '-' (a hidden file, an
    option)."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 200
        or not set(name) <= _NAME_CHARS
        or ".." in name
        or name[0] in ".-"
    ):
        shown = repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:80])
        raise ConfigError(
            f"invalid {what} name {shown}: use 1-200 letters, digits, '_', '-', '.', ':', "
            "starting with a letter, digit or '_', without '..'"
        )
    return name


def check_queues(
    task_queues: Mapping[str, str], consumed: Collection[str], known: Collection[str]
) -> None:
    """A queue name that is a typo leaves jobs that nothing ever runs: fail at start-up.

    ``task_queues`` maps each task to its queue, ``consumed`` is what this worker runs and
    ``known`` the ``known_queues`` setting (the queues other workers run). A task's queue
    must be built in, known, or consumed here; a consumed queue must be built in, known,
    or some task's."""
    if not task_queues:
        return  # nothing to compare with (a worker for tasks it will only learn by name)
    usable = {*BUILT_IN_QUEUES, *known, *consumed}
    stray = {task: q for task, q in sorted(task_queues.items()) if q not in usable}
    if stray:
        named = ", ".join(f"{task!r} names {q!r}" for task, q in stray.items())
        raise ConfigError(
            f"unknown queue: task {named}, a queue no worker configuration knows. Known "
            f"queues: {', '.join(sorted(usable))} (default, priority, known_queues and "
            f"the queues this worker consumes). A typo? Fix the task's queue=. To run it "
            f"in this worker, consume it: --queues "
            f"{','.join([*consumed, *sorted(set(stray.values()) - set(consumed))])} "
            f"(WORKHORSE_QUEUES). Run by other workers? Add it to known_queues "
            f"(WORKHORSE_KNOWN_QUEUES={','.join(sorted({*known, *stray.values()}))})"
        )
    used = {*BUILT_IN_QUEUES, *known, *task_queues.values()}
    unused = sorted(set(consumed) - used)
    if unused:
        raise ConfigError(
            f"worker consumes unknown queue(s) {unused}; the app's tasks and known_queues "
            f"use: {', '.join(sorted(used))}"
        )
