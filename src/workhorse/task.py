"""Tasks: a function, its options, its payload and result codecs, and the handle type.

A pure definition: a task submits through the ``Producer`` it is given (the client), and
knows no app."""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from workhorse import codec
from workhorse.backoff import Backoff, BackoffSpec, make_backoff
from workhorse.cron import CronSpec, parse_cron
from workhorse.errors import ConfigError, PayloadError
from workhorse.job import Job, JobState
from workhorse.limits import KeyFn, Rate, parse_rate, stable_key
from workhorse.settings import check_name

D = TypeVar("D")
R = TypeVar("R")

Seconds = float | int | timedelta
EnvSpec = tuple[tuple[str, str | None], ...]


def seconds(value: Seconds | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_SECONDS
    ):
        raise ConfigError(
            f"{what} must be a number of seconds >= 0 and at most {MAX_SECONDS} (100 years), "
            f"or a timedelta, got {value!r}"
        )
    return float(value)


# The stores keep times as timestamps and counts as 32-bit integers (PostgreSQL's integer).
MAX_SECONDS = 100 * 365 * 86_400
MAX_INT = 2**31 - 1


def check_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_INT:
        raise ConfigError(f"retries must be an int from 0 to {MAX_INT - 1}, got {value!r}")
    return value


def check_priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -MAX_INT <= value <= MAX_INT:
        raise ConfigError(f"priority must be an int from {-MAX_INT} to {MAX_INT}, got {value!r}")
    return value


OnDuplicate = Literal["return", "skip", "raise", "replace"]
Mode = Literal["queue", "http", "both"]
MODES = ("queue", "http", "both")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# A route's auth: True (a write token), a scope ("read", "write"), "webhook" (a Standard
# Webhooks signature), False (open), or a function of the request that returns a truth value.
AuthSpec = bool | str | Callable[[Any], Any]
AUTH_SCOPES = ("read", "write", "webhook")
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./")


@dataclass(frozen=True, slots=True)
class HttpSpec:
    """Where an ``http`` or ``both`` task answers: its route, method and auth. ``path``
    None: the API's own ``/tasks/{name}/call``."""

    path: str | None = None
    method: str = "POST"
    auth: AuthSpec = True


def make_http(mode: Any, http: Any) -> tuple[Mode, HttpSpec | None]:
    """Check ``mode=`` and ``http=`` together: an endpoint needs mode http or both."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if http is None:
        return mode, HttpSpec() if mode != "queue" else None
    if mode == "queue":
        raise ConfigError(
            "http= gives a task an HTTP endpoint; set mode='http' (endpoint only) or "
            "mode='both' (endpoint and queue) with it"
        )
    if isinstance(http, HttpSpec):
        return mode, http
    if not isinstance(http, Mapping):
        raise ConfigError(
            f"http must be a dict such as {{'path': '/api/send-email', 'method': 'POST', "
            f"'auth': True}}; got {http!r}"
        )
    unknown = set(http) - {"path", "method", "auth"}
    if unknown:
        raise ConfigError(f"unknown http option(s) {sorted(unknown)}; valid: path, method, auth")
    path = http.get("path")
    if path is not None and (
        not isinstance(path, str)
        or not path.startswith("/")
        or len(path) > 200
        or not set(path) <= _PATH_CHARS
        or ".." in path
        or "//" in path
    ):
        raise ConfigError(
            f"http path must start with '/' and use letters, digits, '_', '-', '.', '/' "
            f"(no path parameters, no '..'), e.g. '/api/send-email'; got {path!r}"
        )
    method = http.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise ConfigError(f"http method must be one of {', '.join(HTTP_METHODS)}; got {method!r}")
    auth = http.get("auth", True)
    if not (isinstance(auth, bool) or callable(auth) or auth in AUTH_SCOPES):
        raise ConfigError(
            f"http auth must be True (a write token), False (open), 'read', 'write', "
            f"'webhook' (a signed request) or a function of the request; got {auth!r}"
        )
    return mode, HttpSpec(path, method.upper(), auth)


Runtime = Literal["inline", "process", "command"]
RUNTIMES = ("inline", "process", "command")
ON_DUPLICATE = ("return", "skip", "raise", "replace")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """A task's defaults. Every per-call option (see ``CALL_OPTIONS``) can override them."""

    queue: str = "default"
    retries: int = 0
    max_stalls: int | None = None  # None: the max_stalls setting
    backoff: Backoff = field(default_factory=lambda: make_backoff(None))
    timeout: float | None = None
    priority: int = 0
    lease: float | None = None
    cron: CronSpec | None = None
    singleton: bool | KeyFn = False
    on_duplicate: OnDuplicate = "return"
    concurrency: int | None = None
    rate: Rate | None = None
    key: KeyFn | None = None  # the limit key: concurrency and rate hold per key
    runtime: Runtime = "inline"
    command: tuple[str, ...] | None = None  # for runtime="command": the program and its args
    env: EnvSpec = ()  # for runtime="command": (name, value or None to pass the worker's)
    memory_limit: int | None = None  # bytes, for runtime="process": the child's address space
    keep_for: float | None = None  # seconds the finished record is kept; None: the settings'
    mode: Mode = "queue"  # queue: enqueued only; http: an endpoint only; both
    http: HttpSpec | None = None  # the endpoint of an http or both task

    @property
    def queued(self) -> bool:
        """Whether jobs of the task may be enqueued (mode queue or both)."""
        return self.mode != "http"


TASK_OPTIONS = (
    "queue",
    "retries",
    "max_stalls",
    "backoff",
    "timeout",
    "priority",
    "lease",
    "cron",
    "singleton",
    "on_duplicate",
    "concurrency",
    "rate",
    "key",
    "runtime",
    "command",
    "env",
    "memory_limit",
    "keep_for",
    "mode",
    "http",
)
CALL_OPTIONS = (
    "delay",
    "at",
    "priority",
    "queue",
    "retries",
    "max_stalls",
    "timeout",
    "lease",
    "dedup_key",
    "on_duplicate",
    "keep_for",
)


def make_options(
    *,
    queue: str = "default",
    retries: int = 0,
    max_stalls: int | None = None,
    backoff: BackoffSpec = None,
    timeout: Seconds | None = None,
    priority: int = 0,
    lease: Seconds | None = None,
    cron: str | dict[str, Any] | CronSpec | None = None,
    singleton: bool | KeyFn = False,
    on_duplicate: OnDuplicate = "return",
    concurrency: int | None = None,
    rate: str | Rate | None = None,
    key: KeyFn | None = None,
    runtime: Runtime = "inline",
    command: Sequence[str] | None = None,
    env: Sequence[str] | Mapping[str, str] | None = None,
    memory_limit: int | None = None,
    keep_for: Seconds | None = None,
    mode: Mode = "queue",
    http: Mapping[str, Any] | HttpSpec | None = None,
) -> TaskOptions:
    checked_mode, http_spec = make_http(mode, http)
    if checked_mode == "http" and (cron is not None or singleton is not False):
        raise ConfigError(
            "cron= and singleton= enqueue jobs, which a mode='http' task refuses; use mode='both'"
        )
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if (runtime == "command") != (command is not None):
        raise ConfigError("runtime='command' takes command=[program, *args], and only it does")
    if command is not None and (
        isinstance(command, str) or not command or not all(isinstance(a, str) for a in command)
    ):
        raise ConfigError(
            f"command must be a list of strings, e.g. ['node', 'job.js']; got {command!r}"
        )
    if memory_limit is not None and (runtime != "process" or memory_limit < 1 << 20):
        raise ConfigError("memory_limit (bytes, at least 1 MiB) applies to runtime='process'")
    check_name(queue, "queue")
    check_retries(retries)
    check_max_stalls(max_stalls)
    check_priority(priority)
    if not (isinstance(singleton, bool) or callable(singleton)):
        raise ConfigError("singleton must be True or a function data -> key")
    check_on_duplicate(on_duplicate)
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ConfigError(f"concurrency must be an int >= 1, got {concurrency!r}")
    if key is not None and not callable(key):
        raise ConfigError("key must be a function data -> key")
    return TaskOptions(
        queue,
        retries,
        max_stalls,
        make_backoff(backoff),
        seconds(timeout, "timeout"),
        priority,
        seconds(lease, "lease"),
        None if cron is None else parse_cron(cron),
        singleton,
        on_duplicate,
        concurrency,
        None if rate is None else parse_rate(rate),
        key,
        runtime,
        None if command is None else tuple(command),
        make_env(env, runtime),
        memory_limit,
        seconds(keep_for, "keep_for"),
        checked_mode,
        http_spec,
    )


def make_env(env: Sequence[str] | Mapping[str, str] | None, runtime: str) -> EnvSpec:
    """``env=["API_TOKEN"]`` passes the worker's values; ``{"MODE": "fast"}`` sets them."""
    if env is None:
        return ()
    if runtime != "command":
        raise ConfigError("env= applies to runtime='command' (the program's environment)")
    if isinstance(env, Mapping):
        pairs: list[tuple[Any, Any]] = list(env.items())
    elif isinstance(env, str) or not isinstance(env, Sequence):
        raise ConfigError(f"env must be a list of names or a dict of names to values; got {env!r}")
    else:
        pairs = [(name, None) for name in env]
    for name, value in pairs:
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ConfigError(f"env: {name!r} is not an environment variable name")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"env: the value of {name} must be a string, got {value!r}")
    return tuple(sorted(pairs))


def check_max_stalls(value: Any) -> int | None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_INT
    ):
        raise ConfigError(f"max_stalls must be an int from 0 to {MAX_INT - 1}, got {value!r}")
    return value


def check_on_duplicate(value: Any) -> OnDuplicate:
    if value not in ON_DUPLICATE:
        raise ConfigError(f"on_duplicate must be one of {', '.join(ON_DUPLICATE)}; got {value!r}")
    return typing.cast(OnDuplicate, value)


class Producer(Protocol):
    """What a task and a handle submit and follow jobs through (the client)."""

    @property
    def max_payload(self) -> int: ...

    async def enqueue(
        self, task: Task[Any, Any], data: Any = None, **options: Any
    ) -> JobHandle[Any]: ...

    async def enqueue_many(
        self, task: Task[Any, Any], items: Iterable[Any], **options: Any
    ) -> list[JobHandle[Any]]: ...

    async def run(
        self, task: Task[Any, Any], data: Any = None, *, timeout: float | None = None, **o: Any
    ) -> Any: ...

    async def run_task(
        self, task: Task[Any, Any], data: Any, timeout: float | None, options: dict[str, Any]
    ) -> Any: ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def wait(self, job_id: str, timeout: float | None = None) -> Job: ...

    def result_of(self, job: Job) -> Any: ...

    async def cancel(self, job_id: str) -> JobState | None: ...


class TaskContext:
    """What a handler annotates to be given its job's context: the base of ``JobContext``
    (which the worker layer defines), so a task can tell it apart knowing only this."""

    __slots__ = ()


def _is_context(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, TaskContext)


def _inspect_handler(
    fn: Callable[..., Any],
) -> tuple[bool, bool, TypeAdapter[Any] | None, TypeAdapter[Any] | None, Any, Any]:
    """Which arguments the function takes (data, ctx) and how to validate them."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)  # Annotated constraints
    except Exception:  # unresolvable forward references: validate nothing, still run
        hints = {}
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    takes_data = takes_ctx = False
    data_adapter = None
    data_type: Any = Any
    for p in params[:2]:
        hint = hints.get(p.name, p.annotation)
        if _is_context(hint) or p.name in ("ctx", "context"):
            takes_ctx = True
        elif not takes_data and not takes_ctx:
            takes_data = True
            if hint not in (inspect.Parameter.empty, Any, object):
                data_adapter = TypeAdapter(hint)
                data_type = hint
    ret = hints.get("return")
    result_adapter = None
    result_type: Any = Any
    if ret is not None and ret is not Any and ret is not type(None):
        try:
            result_adapter = TypeAdapter(ret)
            result_type = ret
        except Exception:
            result_adapter = None
    return takes_data, takes_ctx, data_adapter, result_adapter, data_type, result_type


# The bare input types whose adapter validates and serializes a value of exactly the type
# as it is: their core schema is the type alone (no constraint, strictness or serializer).
_BARE = {"int": int, "str": str, "bool": bool}


def _kept_type(adapter: TypeAdapter[Any] | None) -> type | None:
    """The type whose values ``adapter`` gives back as they are, if it is a bare one."""
    if adapter is None:
        return None
    try:
        schema: Mapping[str, Any] = adapter.core_schema
        return _BARE.get(schema["type"]) if len(schema) == 1 else None
    except Exception:  # a schema not built yet (a forward reference): none of these
        return None


# Decoded payloads whose JSON an equal value of the same type writes alike (unlike a float:
# -0.0 == 0.0), so ``prepare_encoded`` keeps the bytes it was given.
_AS_IS = (int, str, bool, type(None))


class Task(Generic[D, R]):
    """A registered function. Call it directly to run it in-process (tests), or use
    ``enqueue``/``run`` to go through the queue."""

    def __init__(
        self, producer: Producer, name: str, fn: Callable[..., Any], options: TaskOptions
    ) -> None:
        self.producer = producer
        self.name = check_name(name, "task")
        self._result_what = f"result of task {self.name!r}"  # formatted once, not per job
        self._payload_what = f"payload for task {self.name!r}"
        self.fn = fn
        self.defaults = options
        self.is_async = inspect.iscoroutinefunction(fn)
        (
            self.takes_data,
            self.takes_ctx,
            self._data_adapter,
            self._result_adapter,
            self.data_type,  # the annotated payload type (Any when none): an API's schema
            self.result_type,
        ) = _inspect_handler(fn)
        self.limited = options.concurrency is not None or options.rate is not None
        self._kept = _kept_type(self._data_adapter)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.defaults.queue!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    # -- payloads ----------------------------------------------------------------------
    def prepare(self, data: Any, max_payload: int | None = None) -> tuple[Any, bytes]:
        """Validate and encode a payload: the refusal happens here, at enqueue. Returns the
        value as the handler will see it, and the encoded bytes. ``max_payload``: the
        producer's, when the caller read it already (a bulk call, once for its items)."""
        value, data = self._converted(data)
        if max_payload is None:
            max_payload = self.producer.max_payload
        return value, codec.encode_payload(data, max_payload, self._payload_what)

    @property
    def converts(self) -> bool:
        """Whether its payload goes through an input type (``prepare_encoded`` needs the
        value decoded)."""
        return self._data_adapter is not None

    def prepare_encoded(self, raw: bytes, data: Any) -> bytes:
        """``prepare(data)[1]`` for ``data`` decoded from ``raw``, JSON that orjson wrote (a
        flow step's result, for its follow-up): the same bytes and the same refusals, but
        ``raw`` itself, not encoded again, where the payload's JSON is the input's (no input
        type, or one that gives a string, integer, boolean or None back as it came).
        ``data`` is read only when the task ``converts``."""
        limit = self.producer.max_payload
        if self._data_adapter is not None and type(data) is not self._kept:
            _, out = self._converted(data)
            if type(out) is not type(data) or type(data) not in _AS_IS or out != data:
                return codec.encode_payload(out, limit, self._payload_what)
        # orjson writes again what it read from its own output, byte for byte.
        if len(raw) > limit:
            raise codec.too_large(self._payload_what, len(raw), limit)
        return raw

    def _converted(self, data: Any) -> tuple[Any, Any]:
        """The payload as the handler will see it, and as plain data to encode."""
        value = data
        if type(data) is self._kept:  # as its type would give it back, without the calls
            return data, data
        try:
            adapter = self._data_adapter
            if adapter is not None:
                # The adapter's core validator and serializer, called as its methods call
                # them with their defaults (their wrappers cost as much again, per enqueue).
                try:
                    value = adapter.validator.validate_python(data)
                except ValidationError as exc:
                    raise PayloadError(f"invalid payload for task {self.name!r}: {exc}") from None
                if not isinstance(value, BaseModel):
                    codec.check_json(value, self._payload_what)
                data = adapter.serializer.to_python(value, mode="json")
            elif isinstance(data, BaseModel):
                data = data.model_dump(mode="json")
        except (ValueError, TypeError, RecursionError) as exc:
            if isinstance(exc, PayloadError):
                raise
            # pydantic's serializer refuses a value nested too deep or of an unknown type
            # with a bare ValueError: name the task and the fix instead.
            raise PayloadError(
                f"payload for task {self.name!r} cannot be turned into JSON ({exc}); pass "
                "dicts, lists, strings, numbers, booleans, None or a pydantic model, nested "
                f"at most {codec.MAX_DEPTH} levels deep"
            ) from None
        return value, data

    def encode(self, data: Any) -> bytes:
        return self.prepare(data)[1]

    def singleton_key(self, value: Any) -> str | None:
        """The dedup key of a singleton task: one live job per task, or per key."""
        singleton = self.defaults.singleton
        if singleton is False:
            return None
        if singleton is True:
            return self.name
        return f"{self.name}:{stable_key(singleton(value), f'singleton key of {self.name!r}')}"

    def limit_key(self, value: Any) -> str:
        key_fn = self.defaults.key
        if key_fn is None:
            return self.name
        return f"{self.name}:{stable_key(key_fn(value), f'limit key of {self.name!r}')}"

    def decode(self, raw: bytes) -> Any:
        data = codec.loads(raw)
        if self._data_adapter is not None:
            data = self._data_adapter.validator.validate_python(data)  # as in prepare
        return data

    def args(self, data: Any, ctx: TaskContext) -> tuple[Any, ...]:
        if self.takes_data:
            return (data, ctx) if self.takes_ctx else (data,)
        return (ctx,) if self.takes_ctx else ()

    def encode_result(self, value: Any, max_payload: int | None = None) -> bytes:
        """The result as stored JSON, at most ``max_payload`` bytes (default: the
        producer's setting; a worker passes the value it read once)."""
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if max_payload is None:
            max_payload = self.producer.max_payload
        return codec.encode_payload(value, max_payload, self._result_what)

    def typed_result(self, value: Any) -> R:
        if self._result_adapter is None:
            return typing.cast(R, value)
        try:
            return typing.cast(R, self._result_adapter.validate_python(value))
        except ValidationError:
            return typing.cast(R, value)

    # -- producing ---------------------------------------------------------------------
    def options(self, **options: Any) -> BoundTask[D, R]:
        """Per-call options kept apart from the data:
        ``task.options(delay=10, priority=5).enqueue(data)``."""
        return BoundTask(self, check_call_options(options))

    async def enqueue(self, data: D | None = None, **options: Any) -> JobHandle[R]:
        return await self.producer.enqueue(self, data, **options)

    async def enqueue_many(self, items: Iterable[D], **options: Any) -> list[JobHandle[R]]:
        return await self.producer.enqueue_many(self, items, **options)

    async def run(
        self, data: D | None = None, *, timeout: float | None = None, **options: Any
    ) -> R:
        return typing.cast(R, await self.producer.run(self, data, timeout=timeout, **options))


@dataclass(frozen=True, slots=True)
class BoundTask(Generic[D, R]):
    task: Task[D, R]
    call_options: dict[str, Any]

    def options(self, **options: Any) -> BoundTask[D, R]:
        return replace(self, call_options={**self.call_options, **check_call_options(options)})

    async def enqueue(self, data: D | None = None) -> JobHandle[R]:
        return await self.task.enqueue(data, **self.call_options)

    async def enqueue_many(self, items: Iterable[D]) -> list[JobHandle[R]]:
        return await self.task.enqueue_many(items, **self.call_options)

    async def run(self, data: D | None = None, *, timeout: float | None = None) -> R:
        """``timeout`` bounds the wait; ``options(timeout=...)`` is the attempt's own."""
        producer = self.task.producer
        return typing.cast(
            R, await producer.run_task(self.task, data, timeout, dict(self.call_options))
        )


def check_call_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(CALL_OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {sorted(unknown)}; valid per-call options: "
            f"{', '.join(CALL_OPTIONS)}"
        )
    return options


def due_time(at: datetime | float | None) -> float | None:
    if at is None:
        return None
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ConfigError("at= needs a timezone-aware datetime (e.g. datetime.now(UTC))")
        return at.timestamp()
    if isinstance(at, bool) or not isinstance(at, int | float) or not 0 <= at < _YEAR_10000:
        raise ConfigError(f"at= must be a datetime or epoch seconds before year 10000, got {at!r}")
    return float(at)


_YEAR_10000 = 253_402_300_800


EnqueueStatus = Literal["created", "duplicate", "replaced", "skipped"]


@dataclass(slots=True)
class JobHandle(Generic[R]):
    """What ``enqueue`` returns: the job's id, whether it was created or an existing live
    job was returned (singleton), and ways to follow it."""

    producer: Producer = field(repr=False)
    id: str
    task: str
    queue: str
    status: EnqueueStatus  # created | duplicate (the live job) | replaced | skipped
    state: JobState

    @property
    def created(self) -> bool:
        return self.status == "created"

    async def get(self) -> Job | None:
        return await self.producer.get_job(self.id)

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job and return its result; raises JobFailed / JobCancelled /
        RunTimeout."""
        job = await self.producer.wait(self.id, timeout)
        return typing.cast(R, self.producer.result_of(job))

    async def cancel(self) -> JobState | None:
        return await self.producer.cancel(self.id)


Handler = Callable[..., Awaitable[Any]] | Callable[..., Any]
