"""The App: task registry, settings, a backend, and the client API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from workhorse import codec
from workhorse.backends import Backend, backend_from_url
from workhorse.backoff import BackoffSpec
from workhorse.errors import (
    ConfigError,
    DuplicateJob,
    JobCancelled,
    JobFailed,
    RunTimeout,
    UnknownTaskError,
)
from workhorse.events import EventBus, Handler
from workhorse.job import (
    FINISHED_STATES,
    EnqueueResult,
    Event,
    Job,
    JobState,
    NewJob,
    WorkerInfo,
    new_job_id,
)
from workhorse.scheduler import schedules
from workhorse.scheduler.cron import CronSpec, parse_cron
from workhorse.scheduler.schedules import Schedule, ScheduleInfo
from workhorse.scheduler.ticker import last_key
from workhorse.settings import Settings, check_name
from workhorse.task import (
    EnqueueStatus,
    JobHandle,
    OnDuplicate,
    Runtime,
    Seconds,
    Task,
    check_call_options,
    check_max_stalls,
    check_on_duplicate,
    check_priority,
    check_retries,
    due_time,
    make_options,
    seconds,
)

if TYPE_CHECKING:
    from workhorse.sync import SyncApp
    from workhorse.worker import Worker

log = logging.getLogger("workhorse")
# Seconds run() waits before it looks for a live worker on the job's queue.
NO_WORKER_AFTER = 5.0
F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


class Workhorse:
    """``Workhorse(url=None, **settings)``. The URL defaults to ``WORKHORSE_URL``, else an
    SQLite file under ``./.workhorse/``. Settings are resolved when first needed, so a CLI
    can still ``configure`` an app that a module created at import time."""

    def __init__(
        self, url: str | None = None, *, backend: Backend | None = None, **settings: Any
    ) -> None:
        self._overrides: dict[str, Any] = {"url": url, **settings}
        Settings.load(env={}, **self._overrides)  # fail fast on unknown names
        self._settings: Settings | None = None
        self._backend = backend
        self._backend_given = backend is not None
        self._opened = False
        self._loop: asyncio.AbstractEventLoop | None = None  # where the backend was opened
        self._open_lock: asyncio.Lock | None = None
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.bus = EventBus()
        self._waiters = _Waiters(self)
        self._sync: SyncApp | None = None
        self._embedded: list[tuple[Worker, asyncio.Task[None]]] = []
        self._looks: set[asyncio.Task[None]] = set()  # run()'s checks for a live worker

    # -- configuration -----------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load(**self._overrides)
        return self._settings

    def configure(self, **settings: Any) -> None:
        """Override settings (None leaves one as it is); only before the app opens."""
        if self._opened:
            raise ConfigError("configure() must be called before the app opens its backend")
        given = {k: v for k, v in settings.items() if v is not None}
        Settings.load(env={}, **{**self._overrides, **given})
        self._overrides.update(given)
        self._settings = None
        if "url" in given:
            self._backend = None
            self._backend_given = False

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend_from_url(self.settings.url)
        return self._backend

    async def open(self) -> None:
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self.backend.open()
                self._opened = True
                self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        await self.stop_workers()
        sync, self._sync = self._sync, None
        if sync is not None and self._loop is not sync._loop:
            await self._close_store()
            sync.close()
        elif sync is not None:
            # The facade opened the store on its own loop: it closes it there.
            await asyncio.to_thread(sync.close)
        else:
            await self._close_store()

    async def _close_store(self) -> None:
        for look in list(self._looks):
            look.cancel()
        if self._opened:
            self._opened = False
            self._loop = None
            await self._waiters.close()
            await self.backend.close()

    async def __aenter__(self) -> Workhorse:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _store(self) -> Backend:
        if not self._opened:
            await self.open()
        return self.backend

    # -- registry ----------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[..., Any], /) -> Task[Any, Any]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 0,
        max_stalls: int | None = None,
        backoff: BackoffSpec = None,
        timeout: Seconds | None = None,
        priority: int = 0,
        lease: Seconds | None = None,
        cron: str | dict[str, Any] | CronSpec | None = None,
        singleton: bool | Callable[[Any], Any] = False,
        on_duplicate: OnDuplicate = "return",
        concurrency: int | None = None,
        rate: str | None = None,
        key: Callable[[Any], Any] | None = None,
        runtime: Runtime = "inline",
        command: Sequence[str] | None = None,
        env: Sequence[str] | Mapping[str, str] | None = None,
        memory_limit: int | None = None,
        keep_for: Seconds | None = None,
    ) -> Callable[[Callable[..., Any]], Task[Any, Any]]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 0,
        max_stalls: int | None = None,
        backoff: BackoffSpec = None,
        timeout: Seconds | None = None,
        priority: int = 0,
        lease: Seconds | None = None,
        cron: str | dict[str, Any] | CronSpec | None = None,
        singleton: bool | Callable[[Any], Any] = False,
        on_duplicate: OnDuplicate = "return",
        concurrency: int | None = None,
        rate: str | None = None,
        key: Callable[[Any], Any] | None = None,
        runtime: Runtime = "inline",
        command: Sequence[str] | None = None,
        env: Sequence[str] | Mapping[str, str] | None = None,
        memory_limit: int | None = None,
        keep_for: Seconds | None = None,
    ) -> Task[Any, Any] | Callable[[Callable[..., Any]], Task[Any, Any]]:
        """Register a function (async or sync) as a task: ``@app.task`` or
        ``@app.task(queue=..., retries=..., backoff=..., timeout=..., priority=..., lease=...,
        cron=..., singleton=..., on_duplicate=..., concurrency=..., rate=..., key=...,
        runtime=..., command=..., env=..., memory_limit=..., keep_for=..., max_stalls=...)``.
        Options are checked here: a bad cron pattern, time zone or rate fails at definition."""
        options = {
            "queue": queue,
            "retries": retries,
            "max_stalls": max_stalls,
            "backoff": backoff,
            "timeout": timeout,
            "priority": priority,
            "lease": lease,
            "cron": cron,
            "singleton": singleton,
            "on_duplicate": on_duplicate,
            "concurrency": concurrency,
            "rate": rate,
            "key": key,
            "runtime": runtime,
            "command": command,
            "env": env,
            "memory_limit": memory_limit,
            "keep_for": keep_for,
        }

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            return self.add_task(f, name=name, **options)

        return register(fn) if fn is not None else register

    def add_task(
        self, fn: Callable[..., Any], *, name: str | None = None, **options: Any
    ) -> Task[Any, Any]:
        task_name = name or fn.__name__
        try:
            opts = make_options(**options)
        except TypeError:
            from workhorse.task import TASK_OPTIONS

            unknown = sorted(set(options) - set(TASK_OPTIONS))
            raise ConfigError(
                f"unknown task option(s) {unknown} for {task_name!r}; valid: "
                f"{', '.join(TASK_OPTIONS)}"
            ) from None
        if task_name in self.tasks and self.tasks[task_name].fn is not fn:
            raise ConfigError(
                f"task {task_name!r} is already registered by "
                f"{self.tasks[task_name].fn!r}; give one a name="
            )
        if opts.runtime == "process" and "<locals>" in getattr(fn, "__qualname__", ""):
            raise ConfigError(
                f"task {task_name!r} uses runtime='process', so a child process must import "
                "it: define it at module level, not inside a function"
            )
        task: Task[Any, Any] = Task(self, task_name, fn, opts)
        self.tasks[task_name] = task
        return task

    def discover(self, target: str | Path | ModuleType) -> list[Task[Any, Any]]:
        """Register one task per module of a package (``"myapp.jobs"``) or a folder."""
        from workhorse.discovery import discover

        return discover(self, target)

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTaskError(name, self.tasks) from None

    def _resolve(self, task: str | Task[Any, Any]) -> Task[Any, Any]:
        if isinstance(task, Task):
            return task
        return self.get_task(task)

    # -- producing ---------------------------------------------------------------------
    def _new_job(self, task: Task[Any, Any], data: Any, options: dict[str, Any]) -> NewJob:
        d = task.defaults
        value, raw = task.prepare(data)
        if not options:  # the common case, kept cheap
            return NewJob(
                new_job_id(),
                task.name,
                d.queue,
                raw,
                d.priority,
                0.0,
                None,
                d.retries + 1,
                d.timeout,
                d.lease,
                task.singleton_key(value),
                d.on_duplicate == "replace",
                d.keep_for,
                max_stalls=self._max_stalls(d.max_stalls),
            )
        check_call_options(options)
        queue = check_name(options.get("queue", d.queue), "queue")
        retries = check_retries(options.get("retries", d.retries))
        priority = check_priority(options.get("priority", d.priority))
        key = options.get("dedup_key")
        on_duplicate = check_on_duplicate(options.get("on_duplicate", d.on_duplicate))
        return NewJob(
            new_job_id(),
            task.name,
            queue,
            raw,
            priority,
            seconds(options.get("delay"), "delay") or 0.0,
            due_time(options.get("at")),
            retries + 1,
            seconds(options["timeout"], "timeout") if "timeout" in options else d.timeout,
            seconds(options["lease"], "lease") if "lease" in options else d.lease,
            task.singleton_key(value) if key is None else str(key),
            on_duplicate == "replace",
            seconds(options["keep_for"], "keep_for") if "keep_for" in options else d.keep_for,
            max_stalls=self._max_stalls(check_max_stalls(options.get("max_stalls", d.max_stalls))),
        )

    def _max_stalls(self, own: int | None) -> int:
        return self.settings.max_stalls if own is None else own

    async def _handles(
        self,
        task: Task[Any, Any],
        news: list[NewJob],
        results: list[EnqueueResult],
        on_duplicate: str,
        committed: bool = True,
    ) -> list[JobHandle[Any]]:
        out: list[JobHandle[Any]] = []
        # Inside the caller's transaction nothing is queued until it commits: stay quiet.
        emit = committed and self.bus.wants("job.queued")
        for new, res in zip(news, results, strict=True):
            status: EnqueueStatus = "created"
            if res.replaced:
                status = "replaced"
            elif not res.created:
                if on_duplicate == "raise":
                    existing = await self.backend.get(res.id)
                    if existing is not None:
                        raise DuplicateJob(existing)
                status = "skipped" if on_duplicate == "skip" else "duplicate"
            if emit and status in ("created", "replaced"):
                self.bus.emit(Event("job.queued", res.id, new.task, new.queue, {}, time.time()))
            out.append(JobHandle(self, res.id, task.name, new.queue, status, res.state))
        return out

    @overload
    async def enqueue(
        self, task: Task[Any, R], data: Any = None, **options: Any
    ) -> JobHandle[R]: ...

    @overload
    async def enqueue(self, task: str, data: Any = None, **options: Any) -> JobHandle[Any]: ...

    async def enqueue(
        self, task: str | Task[Any, Any], data: Any = None, **options: Any
    ) -> JobHandle[Any]:
        """Enqueue one job. Options (``delay``, ``at``, ``priority``, ``queue``, ``retries``,
        ``max_stalls``, ``timeout``, ``lease``, ``dedup_key``, ``on_duplicate``,
        ``keep_for``) stay apart from the data.
        ``connection=`` (PostgreSQL) enqueues inside your open psycopg transaction: the job
        exists only if that transaction commits.

        For a singleton, ``handle.status`` tells what happened: ``created``, ``duplicate``
        (the live job is returned), ``replaced`` (the live job took this payload) or
        ``skipped``; ``on_duplicate="raise"`` raises ``DuplicateJob`` instead."""
        t = self._resolve(task)
        connection = options.pop("connection", None)
        return await self._submit(t, self._new_job(t, data, options), options, connection)

    async def _submit(
        self,
        task: Task[Any, Any],
        new: NewJob,
        options: dict[str, Any],
        connection: Any = None,
        watch: bool = False,
    ) -> JobHandle[Any]:
        results = await self._write([new], connection, watch)
        on_dup = options.get("on_duplicate", task.defaults.on_duplicate)
        return (await self._handles(task, [new], results, on_dup, connection is None))[0]

    async def enqueue_many(
        self, task: str | Task[Any, Any], items: Iterable[Any], **options: Any
    ) -> list[JobHandle[Any]]:
        """Enqueue one job per item of ``items`` in one round trip; all or nothing is
        refused when one payload is bad."""
        t = self._resolve(task)
        connection = options.pop("connection", None)
        news = [self._new_job(t, data, options) for data in items]
        if not news:
            return []
        results = await self._write(news, connection)
        on_dup = options.get("on_duplicate", t.defaults.on_duplicate)
        return await self._handles(t, news, results, on_dup, connection is None)

    async def _write(
        self, news: list[NewJob], connection: Any, watch: bool = False
    ) -> list[EnqueueResult]:
        backend = await self._store()
        if connection is None:
            # watch: the caller waits for these jobs next (run()).
            return await (backend.enqueue_watched(news) if watch else backend.enqueue(news))
        enqueue_in = getattr(backend, "enqueue_in", None)
        if not backend.capabilities.transactional_enqueue or enqueue_in is None:
            raise ConfigError(
                f"connection= needs a backend that can enqueue inside your transaction "
                f"(postgresql://); {backend.url.split('://')[0]}:// cannot"
            )
        results: list[EnqueueResult] = await enqueue_in(connection, news)
        return results

    async def run(
        self,
        task: str | Task[Any, Any],
        data: Any = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        """Enqueue, wait, and return the result; raise ``JobFailed`` (with the remote
        type, message and traceback), ``JobCancelled`` or ``RunTimeout``. ``timeout`` bounds
        the wait and, unless ``options`` sets the attempt's own, shortens the attempt's
        limit to it (never lengthens the task's)."""
        return await self._run(self._resolve(task), data, timeout, options)

    async def _run(
        self, t: Task[Any, Any], data: Any, timeout: float | None, options: dict[str, Any]
    ) -> Any:
        """``options`` may set the attempt's ``timeout`` (``task.options(timeout=...)``),
        which ``run()``'s own keyword, the wait, cannot."""
        if timeout is not None and "timeout" not in options:
            options["timeout"] = self._attempt_limit(t, timeout)
        # Held: the store keeps the record (whatever its keep_for) until this caller has
        # the result, and every other caller of run() that hit the same live job too.
        new = self._new_job(t, data, options)
        new.hold = True
        handle = await self._submit(t, new, options, watch=True)
        look = self.warn_without_worker(handle.queue, handle.id, log.warning)
        try:
            job = await self.wait(handle.id, timeout)
        except RunTimeout:
            await self._release(handle.id)
            raise
        finally:
            look.cancel()
        if job.keep_for is not None:
            await self._release(job.id)
        return self.result_of(job)

    def warn_without_worker(
        self, queue: str, job_id: str, report: Callable[[str], Any], app_spec: str = "MODULE:APP"
    ) -> asyncio.TimerHandle:
        """After ``NO_WORKER_AFTER`` seconds, report once if no live worker consumes
        ``queue``: a wait that would otherwise be silent until its timeout, or forever.
        Cancel the returned timer when the wait ends (a timer, not a task: run() is hot)."""

        def look() -> None:
            task = asyncio.ensure_future(self._look_for_worker(queue, job_id, report, app_spec))
            self._looks.add(task)
            task.add_done_callback(self._looks.discard)

        return asyncio.get_running_loop().call_later(NO_WORKER_AFTER, look)

    async def _look_for_worker(
        self, queue: str, job_id: str, report: Callable[[str], Any], app_spec: str
    ) -> None:
        try:
            workers = await self.backend.workers()
        except Exception:
            return  # only a hint: a store that cannot answer now has its own errors
        if not any(queue in w.queues for w in workers):
            report(
                f"no live worker consumes queue {queue!r}: job {job_id} waits until one "
                f"does. Start one: workhorse worker {app_spec} --queues {queue}"
            )

    def _attempt_limit(self, task: Task[Any, Any], wait: float) -> float:
        """The smaller of the wait and the task's limit (else the job_timeout setting)."""
        own = task.defaults.timeout
        own = self.settings.job_timeout if own is None else own
        limit = float(typing.cast(float, seconds(wait, "timeout")))
        return limit if own is None else min(own, limit)

    async def _release(self, job_id: str) -> None:
        try:
            await self.backend.release([job_id])
        except Exception:
            # The hold stays: the record then follows the settings' retention, not its
            # own keep_for. Nothing is lost; it is only kept longer.
            log.warning("job %s: could not release its record for retention", job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job is finished and return its record."""
        await self._store()
        return await self._waiters.wait(job_id, timeout)

    def result_of(self, job: Job) -> Any:
        if job.state is JobState.COMPLETED:
            task = self.tasks.get(job.task)
            return job.result if task is None else task.typed_result(job.result)
        if job.state is JobState.CANCELLED:
            raise JobCancelled(job)
        if job.state is JobState.FAILED:
            raise JobFailed(job)
        raise ConfigError(f"job {job.id} is {job.state}, not finished")

    # -- inspecting and controlling ----------------------------------------------------
    async def get_job(self, job_id: str) -> Job | None:
        return await (await self._store()).get(job_id)

    async def jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | str | None = None,
        task: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first, filtered by queue, state and task, ``limit`` at a time."""
        st = None if state is None else _state(state)
        return await (await self._store()).query(
            queue=queue, state=st, task=task, limit=limit, offset=offset
        )

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        return await (await self._store()).counts(queues)

    async def cancel(self, job_id: str) -> JobState | None:
        """Cancel a queued job now; ask an active one to stop. None if there is no job."""
        return await (await self._store()).cancel(job_id)

    async def retry(self, job_id: str) -> bool:
        """Put a failed or cancelled job back in its queue with fresh attempts."""
        return await (await self._store()).retry(job_id)

    async def purge(
        self,
        *,
        states: Collection[JobState | str] = tuple(FINISHED_STATES),
        older_than: Seconds | None = None,
        keep_last: int | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete finished jobs older than ``older_than`` or beyond the newest
        ``keep_last`` per queue and state."""
        sts = {_state(s) for s in states}
        if sts - FINISHED_STATES:
            raise ConfigError("purge deletes finished jobs only: completed, failed, cancelled")
        return await (await self._store()).purge(
            states=sts,
            older_than=seconds(older_than, "older_than"),
            keep_last=keep_last,
            queue=queue,
        )

    async def pause(self, queue: str) -> None:
        await (await self._store()).pause(check_name(queue, "queue"))

    async def resume(self, queue: str) -> None:
        await (await self._store()).resume(check_name(queue, "queue"))

    async def paused(self) -> set[str]:
        """Every paused queue."""
        return await (await self._store()).paused()

    async def is_paused(self, queue: str) -> bool:
        return queue in await (await self._store()).paused()

    async def workers(self) -> list[WorkerInfo]:
        return await (await self._store()).workers()

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        return await (await self._store()).events(after, limit)

    def on(self, type_: str, handler: Handler | None = None, *, task: str | None = None) -> Any:
        """Subscribe to in-process events: ``@app.on("job.completed", task="send")``."""
        if handler is not None:
            self.bus.on(type_, handler, task=task)
            return handler

        def deco(fn: Handler) -> Handler:
            self.bus.on(type_, fn, task=task)
            return fn

        return deco

    # -- schedules ---------------------------------------------------------------------
    def declared_schedules(self) -> dict[str, Schedule]:
        """Schedules declared in code: each task with ``cron=``, under the task's name."""
        return {
            name: Schedule(name, name, t.defaults.cron, "code")
            for name, t in self.tasks.items()
            if t.defaults.cron is not None
        }

    async def add_schedule(
        self,
        name: str,
        task: str | Task[Any, Any],
        cron: str | dict[str, Any] | CronSpec,
        data: Any = None,
    ) -> Schedule:
        """Add or replace a schedule at run time; every worker picks it up within seconds."""
        t = self._resolve(task)
        spec = parse_cron(cron)
        if data is not None:
            spec = replace(spec, data=data)
        t.prepare(spec.data)  # a payload the task refuses is refused now, not at each tick
        schedule = Schedule(check_name(name, "schedule"), t.name, spec, "api")
        await schedules.put(await self._store(), schedule)
        return schedule

    async def remove_schedule(self, name: str) -> bool:
        return await schedules.remove(await self._store(), name)

    async def schedules(self) -> list[ScheduleInfo]:
        """Every stored schedule with its next run and its last fired job."""
        backend = await self._store()
        now = datetime.fromtimestamp(await backend.now(), UTC)
        out = []
        for name, s in sorted((await schedules.load(backend)).items()):
            last = await backend.kv_get(last_key(name))
            last_value = codec.loads(last) if last else None
            out.append(
                ScheduleInfo(
                    name,
                    s.task,
                    s.cron.pattern,
                    s.cron.timezone,
                    s.cron.data,
                    s.source,
                    s.cron.next_after(now),
                    None if last_value is None else datetime.fromtimestamp(last_value["tick"], UTC),
                    None if last_value is None else last_value["job_id"],
                )
            )
        return out

    # -- workers -----------------------------------------------------------------------
    def worker(self, **options: Any) -> Worker:
        from workhorse.worker import Worker

        return Worker(self, **options)

    async def start_worker(self, **options: Any) -> Worker | None:
        """Run a worker inside this process, in the background (development, small apps).
        Returns None when ``embedded_worker`` is off (``WORKHORSE_EMBEDDED_WORKER=false``),
        the production switch for apps whose workers run on their own machines."""
        if not self.settings.embedded_worker:
            return None
        worker = self.worker(**options)
        self._embedded.append((worker, asyncio.create_task(worker.run(), name="workhorse")))
        return worker

    async def stop_workers(self) -> None:
        """Stop the workers started with ``start_worker`` and wait for them."""
        embedded, self._embedded = self._embedded, []
        for worker, _ in embedded:
            worker.stop()
        await asyncio.gather(*(task for _, task in embedded), return_exceptions=True)

    def use(self, plugin: Callable[[Workhorse], Any]) -> None:
        """Add a plugin: a function that takes the app and registers tasks or hooks."""
        plugin(self)

    # -- sync facade -------------------------------------------------------------------
    @property
    def sync(self) -> SyncApp:
        """Blocking versions of the client methods, for Django, Flask and scripts."""
        if self._sync is None:
            from workhorse.sync import SyncApp

            self._sync = SyncApp(self)
        return self._sync


def _state(value: JobState | str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        raise ConfigError(
            f"unknown state {value!r}; valid: {', '.join(s.value for s in JobState)}"
        ) from None


class _Waiters:
    """One pump per app turns the backend's finish notifications into per-job futures."""

    def __init__(self, app: Workhorse) -> None:
        self.app = app
        self._futs: dict[str, list[asyncio.Future[Job]]] = {}
        self._pump: asyncio.Task[None] | None = None

    async def wait(self, job_id: str, timeout: float | None) -> Job:
        fut: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._futs.setdefault(job_id, []).append(fut)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run(), name="workhorse-waiters")
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise RunTimeout(job_id, typing.cast(float, timeout)) from None
        finally:
            futs = self._futs.get(job_id)
            if futs is not None and fut in futs:
                futs.remove(fut)
                if not futs:
                    del self._futs[job_id]

    async def _run(self) -> None:
        backend = self.app.backend
        interval = self.app.settings.poll_interval
        while self._futs:
            try:
                done = await backend.wait_finished(list(self._futs), interval)
            except Exception:
                log.exception("waiting for job results failed; retrying")
                await asyncio.sleep(min(interval, 1.0))
                continue
            for job in done:
                for fut in self._futs.pop(job.id, ()):
                    if not fut.done():
                        fut.set_result(job)

    async def close(self) -> None:
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._pump = None
