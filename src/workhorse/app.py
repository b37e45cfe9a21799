"""The app: the facade users hold, over a registry of tasks and a client.

``Workhorse`` resolves the settings, opens and closes the store, registers tasks with its
decorator, and hands every producer call to its client; workers, the scheduler and the
sync facade are built on that client and registry, never on the app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from workhorse.backends import Backend
from workhorse.backoff import BackoffSpec
from workhorse.client import KEEP, Client
from workhorse.cron import CronSpec
from workhorse.errors import ConfigError
from workhorse.events import EventBus, Handler
from workhorse.flows import FLOW_OPTIONS
from workhorse.job import FINISHED_STATES, Event, Job, JobKey, JobState, WorkerInfo
from workhorse.observability import produced
from workhorse.registry import Registry
from workhorse.schedules import Schedule, ScheduleInfo
from workhorse.settings import Settings
from workhorse.task import JobHandle, Mode, OnDuplicate, Runtime, Seconds, Task

if TYPE_CHECKING:
    from workhorse.flows import Flows
    from workhorse.hooks import Hooks, Listener
    from workhorse.hooks.hook import Hook, HookHandler, HookSet
    from workhorse.sync import SyncApp
    from workhorse.worker import Worker

F = TypeVar("F", bound=Callable[..., Any])
STEP_WITHOUT_FLOW = (
    "entry=, triggers=, subscribes=, emits= and wait= make a flow step: add flow='name'"
)
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
        self.registry = Registry()
        self.client = Client(self.registry, self._load_settings, backend=backend)
        self.client.counting = produced.counting  # "jobs enqueued"
        self._sync: SyncApp | None = None
        self._embedded: list[tuple[Worker, asyncio.Task[None]]] = []
        self._hook_set: HookSet | None = None
        self._listeners: list[tuple[Listener, asyncio.Task[None]]] = []
        self._flows: Flows | None = None

    @property
    def _hooks(self) -> HookSet:
        # Made, and the hooks' modules imported, on the first hook: an app without any
        # holds neither.
        if self._hook_set is None:
            from workhorse.hooks.hook import HookSet

            self._hook_set = HookSet()
        return self._hook_set

    def _load_settings(self) -> Settings:
        return Settings.load(**self._overrides)

    @property
    def flows(self) -> Flows:
        """Start, read, cancel and signal flow runs (``docs/flows.md``)."""
        # Made, and its modules imported, on first use: an app without flows holds neither.
        if self._flows is None:
            from workhorse.flows import Flows

            self._flows = Flows(self.client)
        return self._flows

    # -- configuration -----------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.client.settings

    def configure(self, **settings: Any) -> None:
        """Override settings (None leaves one as it is); only before the app opens."""
        if self.client.opened:
            raise ConfigError("configure() must be called before the app opens its backend")
        given = {k: v for k, v in settings.items() if v is not None}
        Settings.load(env={}, **{**self._overrides, **given})
        self._overrides.update(given)
        self.client.reconfigure(url_changed="url" in given)

    @property
    def backend(self) -> Backend:
        return self.client.backend

    @property
    def tasks(self) -> dict[str, Task[Any, Any]]:
        """Registered tasks by name."""
        return self.registry.tasks

    @property
    def bus(self) -> EventBus:
        """The in-process event bus: what this process's own worker and producers just did
        (``app.on(..., local=True)`` or ``app.bus.on``); not durable, not shared."""
        return self.client.bus

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.stop_listener()
        await self.stop_workers()
        sync, self._sync = self._sync, None
        if sync is not None and self.client.loop is not sync.loop:
            await self.client.close()
            sync.close()
        elif sync is not None:
            # The facade opened the store on its own loop: it closes it there.
            await asyncio.to_thread(sync.close)
        else:
            await self.client.close()

    async def __aenter__(self) -> Workhorse:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

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
        mode: Mode = "queue",
        http: Mapping[str, Any] | None = None,
        flow: str | Sequence[str] | None = None,
        entry: bool = False,
        subscribes: Sequence[str] | None = None,
        emits: Sequence[str] | None = None,
        wait: Mapping[str, Any] | None = None,
        triggers: Sequence[str] | None = None,
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
        mode: Mode = "queue",
        http: Mapping[str, Any] | None = None,
        flow: str | Sequence[str] | None = None,
        entry: bool = False,
        subscribes: Sequence[str] | None = None,
        emits: Sequence[str] | None = None,
        wait: Mapping[str, Any] | None = None,
        triggers: Sequence[str] | None = None,
    ) -> Task[Any, Any] | Callable[[Callable[..., Any]], Task[Any, Any]]:
        """Register a function (async or sync) as a task: ``@app.task`` or
        ``@app.task(queue=..., retries=..., backoff=..., timeout=..., priority=..., lease=...,
        cron=..., singleton=..., on_duplicate=..., concurrency=..., rate=..., key=...,
        runtime=..., command=..., env=..., memory_limit=..., keep_for=..., max_stalls=...,
        mode=..., http=...)``. ``mode="http"`` or ``"both"`` with ``http={"path", "method",
        "auth"}`` makes it an endpoint too (``workhorse.http``, docs/http.md).
        Options are checked here: a bad cron pattern, time zone or rate fails at definition.
        ``flow=`` makes it a step of that flow (or flows), with ``entry=True`` or
        ``subscribes=[...]``, the triggers it ``emits=[...]``, and a ``wait={...}`` before it
        runs; an entry's ``triggers=[...]`` start its flow from outside a run
        (``app.flows.trigger``; docs/flows.md)."""
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
            "mode": mode,
            "http": http,
        }
        if flow is not None:
            options.update(
                flow=flow,
                entry=entry,
                subscribes=subscribes,
                emits=emits,
                wait=wait,
                triggers=triggers,
            )
        elif entry or subscribes or emits or wait or triggers:
            raise ConfigError(STEP_WITHOUT_FLOW)

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            return self.add_task(f, name=name, **options)

        return register(fn) if fn is not None else register

    def add_task(
        self, fn: Callable[..., Any], *, name: str | None = None, **options: Any
    ) -> Task[Any, Any]:
        steps = {k: options.pop(k) for k in FLOW_OPTIONS if k in options}
        if steps and "flow" not in steps:
            raise ConfigError(STEP_WITHOUT_FLOW)
        if steps:
            # Checked before the task exists, so a bad step leaves nothing registered.
            from workhorse.flows import Graph

            Graph().add_step(str(name or getattr(fn, "__name__", "task")), **steps)
        task = self.registry.add_task(fn, name=name, **options)
        if steps:
            self.flows.add_step(task.name, **steps)
        return task

    def discover(self, target: str | Path | ModuleType) -> list[Task[Any, Any]]:
        """Register one task per module of a package (``"myapp.jobs"``) or a folder."""
        from workhorse.discovery import discover

        return discover(self.registry, target, self.add_task)

    def get_task(self, name: str) -> Task[Any, Any]:
        return self.registry.get_task(name)

    def declared_schedules(self) -> dict[str, Schedule]:
        """Schedules declared in code: each task with ``cron=``, under the task's name."""
        return self.registry.declared_schedules()

    # -- producing (the client) --------------------------------------------------------
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
        return await self.client.enqueue(task, data, **options)

    async def enqueue_many(
        self, task: str | Task[Any, Any], items: Iterable[Any], **options: Any
    ) -> list[JobHandle[Any]]:
        """Enqueue one job per item of ``items`` in one round trip; all or nothing is
        refused when one payload is bad."""
        return await self.client.enqueue_many(task, items, **options)

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
        return await self.client.run(task, data, timeout=timeout, **options)

    def warn_without_worker(
        self, queue: str, job_id: str, report: Callable[[str], Any], app_spec: str = "MODULE:APP"
    ) -> asyncio.TimerHandle:
        """After a few seconds, report once if no live worker consumes ``queue``; cancel
        the returned timer when the wait ends."""
        return self.client.warn_without_worker(queue, job_id, report, app_spec)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job is finished and return its record."""
        return await self.client.wait(job_id, timeout)

    def result_of(self, job: Job) -> Any:
        return self.client.result_of(job)

    # -- inspecting and controlling ----------------------------------------------------
    async def get_job(self, job_id: str) -> Job | None:
        return await self.client.get_job(job_id)

    async def jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | str | None = None,
        task: str | None = None,
        limit: int = 50,
        offset: int = 0,
        after: JobKey | None = None,
    ) -> list[Job]:
        """Jobs newest first, filtered by queue, state and task, ``limit`` at a time;
        ``after=JobKey.of(last)`` starts after a page's last job (a keyset page)."""
        return await self.client.jobs(
            queue=queue, state=state, task=task, limit=limit, offset=offset, after=after
        )

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        return await self.client.counts(queues)

    async def cancel(self, job_id: str) -> JobState | None:
        """Cancel a queued job now; ask an active one to stop. None if there is no job."""
        return await self.client.cancel(job_id)

    async def retry(self, job_id: str, data: Any = KEEP, *, by: str | None = None) -> bool:
        """Put a failed or cancelled job back in its queue with fresh attempts; with
        ``data``, with that payload instead (``Client.retry``)."""
        return await self.client.retry(job_id, data, by=by)

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
        return await self.client.purge(
            states=states, older_than=older_than, keep_last=keep_last, queue=queue
        )

    async def pause(self, queue: str) -> None:
        await self.client.pause(queue)

    async def resume(self, queue: str) -> None:
        await self.client.resume(queue)

    async def paused(self) -> set[str]:
        """Every paused queue."""
        return await self.client.paused()

    async def is_paused(self, queue: str) -> bool:
        return await self.client.is_paused(queue)

    async def pause_worker(self, worker_id: str) -> None:
        await self.client.pause_worker(worker_id)

    async def resume_worker(self, worker_id: str) -> None:
        await self.client.resume_worker(worker_id)

    async def workers(self) -> list[WorkerInfo]:
        return await self.client.workers()

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        return await self.client.events(after, limit)

    @overload
    def on(
        self,
        type_: str = "*",
        handler: None = None,
        *,
        task: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        local: bool = False,
        flow: str | None = None,
    ) -> Callable[[F], F]: ...

    @overload
    def on(
        self,
        type_: str,
        handler: HookHandler | Handler,
        *,
        task: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        local: bool = False,
        flow: str | None = None,
    ) -> Any: ...

    def on(
        self,
        type_: str = "*",
        handler: HookHandler | Handler | None = None,
        *,
        task: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        local: bool = False,
        flow: str | None = None,
    ) -> Any:
        """Subscribe a hook to the durable event log: ``@app.on("job.completed",
        task="send_*", queue="mail")`` (glob patterns). Listeners of the app's hook group
        (``app.start_listener()``, ``workhorse listen``) call it at least once per event,
        in order per job, with a ``JobEvent``. Returns the ``Hook`` (``.remove()``); as
        a decorator it returns the function. ``name`` keys the hook's parked events
        (default: module and function name).

        ``flow="onboarding"`` (a glob) keeps the events of those flows' runs: flow.*,
        step.*, emit and state (their data names the flow) and the job events of their
        steps (the job's id names the run).

        ``local=True`` subscribes to the in-process bus instead (``app.bus``): only what
        this process's own worker and producers do, not durable, exact task name."""
        if flow is not None:
            if local:
                raise ConfigError("flow= filters durable hooks; drop local=True")
            from workhorse.flows.filters import only_flow

            if handler is not None:
                return self.on(
                    type_, only_flow(handler, flow, self.flows), task=task, queue=queue, name=name
                )

            def flow_deco(fn: F) -> F:
                self.on(type_, only_flow(fn, flow, self.flows), task=task, queue=queue, name=name)
                return fn

            return flow_deco
        if local:
            if queue is not None or name is not None:
                raise ConfigError("local=True hooks filter by type and task only")

            def bus_on(fn: Handler) -> Handler:
                self.bus.on(type_, fn, task=task)
                return fn

            return bus_on if handler is None else bus_on(handler)  # type: ignore[arg-type]
        if handler is not None:
            return self._hooks.add(type_, handler, task=task, queue=queue, name=name)  # type: ignore[arg-type]

        def deco(fn: HookHandler) -> HookHandler:
            self._hooks.add(type_, fn, task=task, queue=queue, name=name)
            return fn

        return deco

    def off(self, target: Hook | HookHandler, type_: str | None = None) -> int:
        """Unsubscribe a hook (the handle ``app.on`` returned, or its function, of
        ``type_`` only if given); how many hooks were removed."""
        from workhorse.hooks.hook import Hook

        if isinstance(target, Hook):
            return int(target.remove())
        return self._hooks.remove_handler(target, type_)

    @property
    def hooks(self) -> Hooks:
        """Hook groups' lag, parked events and replay."""
        from workhorse.hooks import Hooks

        return Hooks(self.client, self._hooks)

    def listener(self, **options: Any) -> Listener:
        """A listener for this app's hooks (options: see ``Listener``); run it yourself."""
        from workhorse.hooks import Listener

        return Listener(self.client, self._hooks, **options)

    async def start_listener(self, **options: Any) -> Listener:
        """Run a listener in this process, in the background (e.g. from a FastAPI
        lifespan): ``group``, ``from_start``, ``partitions``, ``attempts``, ...; stop it
        with ``await app.stop_listener()`` (the app's close does too)."""
        await self.client.open()
        listener = self.listener(**options)
        task = asyncio.create_task(listener.run(), name="workhorse-listener")
        self._listeners.append((listener, task))
        return listener

    async def stop_listener(self) -> None:
        """Stop the listeners started with ``start_listener``: each finishes its batch,
        saves its cursors and gives its partitions back."""
        listeners, self._listeners = self._listeners, []
        for listener, _ in listeners:
            listener.stop()
        await asyncio.gather(*(task for _, task in listeners), return_exceptions=True)

    # -- schedules ---------------------------------------------------------------------
    async def add_schedule(
        self,
        name: str,
        task: str | Task[Any, Any],
        cron: str | dict[str, Any] | CronSpec,
        data: Any = None,
    ) -> Schedule:
        """Add or replace a schedule at run time; every worker picks it up within seconds."""
        return await self.client.add_schedule(name, task, cron, data)

    async def remove_schedule(self, name: str) -> bool:
        return await self.client.remove_schedule(name)

    async def schedules(self) -> list[ScheduleInfo]:
        """Every stored schedule with its next run and its last fired job."""
        return await self.client.schedules()

    # -- workers -----------------------------------------------------------------------
    def worker(self, **options: Any) -> Worker:
        from workhorse.worker import Worker

        flows = self._flows
        options.setdefault("steps", flows.engine if flows is not None and flows.graph else None)
        return Worker(self.client, **options)

    async def start_worker(self, **options: Any) -> Worker | None:
        """Run a worker inside this process, in the background (development, small apps).
        Returns None when ``embedded_worker`` is off (``WORKHORSE_EMBEDDED_WORKER=false``),
        the production switch for apps whose workers run on their own machines, or when it
        is ``"dev"`` and the ``environment`` setting (``WORKHORSE_ENVIRONMENT``) is not
        ``development``."""
        embedded = self.settings.embedded_worker
        if not embedded or (embedded == "dev" and self.settings.environment != "development"):
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

            self._sync = SyncApp(self.client)
        return self._sync
