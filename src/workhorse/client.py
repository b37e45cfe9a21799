"""The client: build, submit, wait for, inspect and control jobs on a backend.

The public seam every layer above uses (the worker, the scheduler, the runtimes, the sync
facade, the app): it sits on a backend, a registry of tasks and the settings, and knows
nothing of the app that holds it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, overload

from workhorse import codec, events, schedules
from workhorse.backends import JOB_EVENTS, Backend, Claim, backend_from_url
from workhorse.cron import CronSpec, parse_cron
from workhorse.errors import ConfigError, DuplicateJob, JobCancelled, JobFailed, RunTimeout
from workhorse.events import EventBus
from workhorse.job import (
    FINISHED_STATES,
    Claimed,
    EnqueueResult,
    Event,
    Job,
    JobKey,
    JobState,
    NewJob,
    WorkerInfo,
    new_job_id,
    new_job_ids,
    private_queue,
)
from workhorse.registry import Registry
from workhorse.schedules import Schedule, ScheduleInfo, last_key
from workhorse.settings import Settings, check_name
from workhorse.task import (
    EnqueueStatus,
    JobHandle,
    Seconds,
    Task,
    check_call_options,
    check_max_stalls,
    check_on_duplicate,
    check_priority,
    check_retries,
    due_time,
    seconds,
)

log = logging.getLogger("workhorse")
# Seconds run() waits before it looks for a live worker on the job's queue.
NO_WORKER_AFTER = 5.0
KEEP: Any = object()  # retry(): the job keeps its payload (None is a payload too)
R = TypeVar("R")


class Instrument(Protocol):
    """Told of jobs about to be written (``Client.instruments``): tracing carries the
    enqueuing span's context to the job this way; and wraps each call of a hook."""

    async def enqueuing(self, client: Client, news: Sequence[NewJob]) -> None: ...

    def delivering(
        self, client: Client, hook: str, event: HookCall
    ) -> AbstractAsyncContextManager[object]: ...


class HookCall(Protocol):
    """What an instrument reads of an event a hook is called with (hooks' ``JobEvent``)."""

    id: int
    type: str
    job_id: str | None
    task: str | None
    queue: str | None


class Counter(Protocol):
    """Writes ``Client.enqueued`` where users read it (the store's counters): made and
    started at the first job the client counts, stopped (its last figures written) at
    close."""

    async def stop(self) -> None: ...


class HasClient(Protocol):
    """Anything that holds a client (the app does)."""

    @property
    def client(self) -> Client: ...


def client_of(source: Client | HasClient) -> Client:
    """The client itself, or the one ``source`` holds: the layers above take either."""
    return source if isinstance(source, Client) else source.client


class Client:
    """Everything a producer does, on one backend and one registry. ``settings`` is a
    function that resolves the settings when first needed (the app's, which a CLI can
    still configure before anything opens)."""

    def __init__(
        self,
        registry: Registry,
        settings: Callable[[], Settings],
        *,
        backend: Backend | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.registry = registry
        if registry.producer is None:
            registry.producer = self
        self.bus = EventBus() if bus is None else bus
        self._load_settings = settings
        self._settings: Settings | None = None
        self._backend = backend
        self._backend_given = backend is not None
        self._opened = False
        self._loop: asyncio.AbstractEventLoop | None = None  # where the backend was opened
        self._open_lock: asyncio.Lock | None = None
        self._waiters = _Waiters(self)
        self._looks: set[asyncio.Task[None]] = set()  # run()'s checks for a live worker
        self.instruments: list[Instrument] = []
        # Jobs this client created, per (queue, task), since it began: "jobs enqueued",
        # a dict add per call; ``counter`` takes them off the hot path once a second.
        self.enqueued: dict[tuple[str, str], int] = {}
        # Called at the first job counted (observability sets it): None, or a started Counter.
        self.counting: Callable[[Client], Counter | None] | None = None
        self._counter: Counter | None = None
        self._counted = False

    # -- settings and the store --------------------------------------------------------
    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._load_settings()
        return self._settings

    @property
    def max_payload(self) -> int:
        """The largest encoded payload or result, in bytes (the max_payload setting)."""
        return self.settings.max_payload

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend_from_url(self.settings.url)
        return self._backend

    @property
    def backend_given(self) -> bool:
        """Whether the backend is an object the caller passed (``backend=``), not one
        built from the URL: then no other connection can reach the same store."""
        return self._backend_given

    @property
    def opened(self) -> bool:
        """Whether the backend is open (settings can no longer change)."""
        return self._opened

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the backend was opened on, None while closed."""
        return self._loop

    def reconfigure(self, url_changed: bool) -> None:
        """Forget the resolved settings (and the backend, when the URL changed): the
        settings changed before the store opened."""
        if self._opened:
            raise ConfigError("configure() must be called before the app opens its backend")
        self._settings = None
        if url_changed:
            self._backend = None
            self._backend_given = False

    def replace_backend(self, backend: Backend | None) -> Backend | None:
        """Use ``backend`` (None: the one the URL names) until replaced again; only while
        closed. Returns the object given before, if any: tests put a memory store with a
        fake clock under an app that a module created."""
        if self._opened:
            raise ConfigError("replace_backend() must be called while the client is closed")
        before = self._backend if self._backend_given else None
        self._backend = backend
        self._backend_given = backend is not None
        return before

    def connection(self) -> Client:
        """A second client on the same settings and registry, with its own connection to
        the store (and its own event bus)."""
        other = Client(self.registry, self._load_settings)
        other.counting = self.counting
        return other

    async def open(self) -> None:
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                backend, settings = self.backend, self.settings
                backend.max_log_lines = settings.max_log_lines
                backend.max_log_bytes = settings.max_log_bytes
                await backend.open()
                self._opened = True
                self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Stop the waits for a live worker and the result pump, and close the store."""
        for look in list(self._looks):
            look.cancel()
        counter, self._counter = self._counter, None
        self._counted = False
        if counter is not None:
            await counter.stop()  # before the store closes: the last counts land
        if self._opened:
            self._opened = False
            self._loop = None
            await self._waiters.close()
            await self.backend.close()

    async def store(self) -> Backend:
        """The backend, opened first if it is not yet."""
        if not self._opened:
            await self.open()
        return self.backend

    # -- producing ---------------------------------------------------------------------
    def new_job(
        self, task: Task[Any, Any], data: Any, options: dict[str, Any], job_id: str | None = None
    ) -> NewJob:
        """The record to enqueue for one call: the payload checked and encoded, the
        per-call ``options`` checked and laid over the task's defaults. ``job_id``: its
        id when the caller derives it (a flow step's), else a new one."""
        d = task.defaults
        value, raw = task.prepare(data)
        if job_id is None:
            job_id = new_job_id()
        if not options:  # the common case, kept cheap
            key = task.singleton_key(value)
            return self._default_job(task, job_id, raw, d.timeout, key, d.on_duplicate == "replace")
        check_call_options(options)
        queue = check_name(options.get("queue", d.queue), "queue")
        retries = check_retries(options.get("retries", d.retries))
        priority = check_priority(options.get("priority", d.priority))
        key = options.get("dedup_key")
        on_duplicate = check_on_duplicate(options.get("on_duplicate", d.on_duplicate))
        return NewJob(
            job_id,
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

    def step_job(
        self, task: Task[Any, Any], raw: bytes, data: Any, timeout: float | None, job_id: str
    ) -> NewJob:
        """``new_job(task, data, options, job_id)`` of a flow step's follow-up, ``data``
        decoded from ``raw`` (its cause's result; read only where the task ``converts``),
        with no option but its flow's step ``timeout`` (for a task that sets none), and no
        dedup key: its derived id already makes it one job (docs/decisions.md)."""
        d = task.defaults
        late = d.timeout if timeout is None else seconds(timeout, "timeout")
        return self._default_job(task, job_id, task.prepare_encoded(raw, data), late, None, False)

    def _default_job(
        self,
        task: Task[Any, Any],
        job_id: str,
        raw: bytes,
        timeout: float | None,
        key: str | None,
        replace: bool,
    ) -> NewJob:
        """A job of ``task`` with its defaults but for its timeout and dedup key."""
        d = task.defaults
        return NewJob(
            job_id,
            task.name,
            d.queue,
            raw,
            d.priority,
            0.0,
            None,
            d.retries + 1,
            timeout,
            d.lease,
            key,
            replace,
            d.keep_for,
            max_stalls=self._max_stalls(d.max_stalls),
        )

    def _new_jobs(self, task: Task[Any, Any], items: list[Any], ids: list[str]) -> list[NewJob]:
        """new_job without call options for each item, with its id: what the jobs share is
        looked up once (a bulk call's producer work runs before its first job is sent)."""
        d = task.defaults
        prepare, name, queue, priority = task.prepare, task.name, d.queue, d.priority
        attempts, timeout, lease, keep_for = d.retries + 1, d.timeout, d.lease, d.keep_for
        replaces, stalls = d.on_duplicate == "replace", self._max_stalls(d.max_stalls)
        keyed, limit = d.singleton is not False, self.max_payload
        out: list[NewJob] = []
        for data, job_id in zip(items, ids, strict=True):
            value, raw = prepare(data, limit)
            out.append(
                NewJob(
                    job_id,
                    name,
                    queue,
                    raw,
                    priority,
                    0.0,
                    None,
                    attempts,
                    timeout,
                    lease,
                    task.singleton_key(value) if keyed else None,
                    replaces,
                    keep_for,
                    max_stalls=stalls,
                )
            )
        return out

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
        statuses = self._announce(task, news, results, on_duplicate, committed)
        if on_duplicate == "raise":
            for res, status in zip(results, statuses, strict=True):
                if status == "duplicate":
                    existing = await self.backend.get(res.id)
                    if existing is not None:
                        raise DuplicateJob(existing)
        return [
            JobHandle(self, res.id, task.name, new.queue, status, res.state)
            for new, res, status in zip(news, results, statuses, strict=True)
        ]

    def _announce(
        self,
        task: Task[Any, Any],
        news: Sequence[NewJob],
        results: Sequence[EnqueueResult],
        on_duplicate: str,
        committed: bool = True,
    ) -> list[EnqueueStatus]:
        """Each job's status; the new and replaced ones announced (job.queued), the new
        ones counted."""
        # Inside the caller's transaction nothing is queued until it commits: stay quiet.
        emit = committed and self.bus.wants("job.queued")
        statuses: list[EnqueueStatus] = []
        created = 0
        for new, res in zip(news, results, strict=True):
            status: EnqueueStatus = "created"
            if res.replaced:
                status = "replaced"
            elif not res.created:
                status = "skipped" if on_duplicate == "skip" else "duplicate"
            else:
                created += 1
            if emit and status != "duplicate" and status != "skipped":
                self.bus.emit(events.queued(res.id, new.task, new.queue))
            statuses.append(status)
        if created:
            self._count(news[0].queue, task.name, created)
        return statuses

    def _count(self, queue: str, task: str, n: int) -> None:
        """Add to "jobs enqueued" (the calls' options give one queue to all their jobs)."""
        key = (queue, task)
        self.enqueued[key] = self.enqueued.get(key, 0) + n
        if not self._counted:
            self._counted = True
            if self.counting is not None:
                self._counter = self.counting(self)

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
        t = _queued(self.registry.resolve(task))
        connection = options.pop("connection", None)
        new = self.new_job(t, data, options)
        if connection is None and self._opened and not self.instruments:
            # The request handler's call, without the levels the rarer ones need.
            (res,) = await self.backend.enqueue([new])
            if res.created and not res.replaced:
                return self._created(t, new, res)
            on_dup = options.get("on_duplicate", t.defaults.on_duplicate)
            return (await self._handles(t, [new], [res], on_dup))[0]
        return await self.submit(t, new, options, connection)

    def _created(self, task: Task[Any, Any], new: NewJob, res: EnqueueResult) -> JobHandle[Any]:
        """The handle of one job the store created (as _handles makes it)."""
        if self.bus.wants("job.queued"):
            self.bus.emit(events.queued(res.id, new.task, new.queue))
        self._count(new.queue, task.name, 1)
        return JobHandle(self, res.id, task.name, new.queue, "created", res.state)

    async def submit(
        self,
        task: Task[Any, Any],
        new: NewJob,
        options: dict[str, Any],
        connection: Any = None,
        watch: bool = False,
    ) -> JobHandle[Any]:
        """Write one job built by ``new_job`` and return its handle (``watch``: the
        caller waits for it next; ``connection``: inside the caller's transaction)."""
        results = await self._write([new], connection, watch)
        res = results[0]
        if res.created and not res.replaced and connection is None:
            return self._created(task, new, res)  # as _handles makes it, with fewer calls
        on_dup = options.get("on_duplicate", task.defaults.on_duplicate)
        return (await self._handles(task, [new], results, on_dup, connection is None))[0]

    async def submit_many(
        self, items: Sequence[tuple[Task[Any, Any], NewJob]]
    ) -> list[JobHandle[Any]]:
        """Write jobs built by ``new_job``, of any tasks, in one round trip."""
        if not items:
            return []
        results = await self._write([new for _, new in items], None)
        out: list[JobHandle[Any]] = []
        for (task, new), res in zip(items, results, strict=True):
            out += await self._handles(task, [new], [res], task.defaults.on_duplicate)
        return out

    async def submit_claimed(
        self,
        items: Sequence[tuple[Claim, Task[Any, Any], NewJob]],
        kv: Mapping[str, str] | None = None,
        published: Sequence[Event] = (),
        counters: Sequence[tuple[str, int, float | None]] = (),
    ) -> list[tuple[bool, JobHandle[Any] | None]]:
        """Write jobs built by ``new_job``, each with its claim, in one round trip where
        the store can (``Backend.enqueue_claimed``): whether the call set each claim, and
        the job's handle when it wrote the job. ``kv``, ``published`` and ``counters``: keys
        set, events published and counters added before the jobs, in the same call
        (``Backend.enqueue_claimed_with``)."""
        if not items:
            return []
        backend = await self.store()
        await self.prepare_claimed(items)
        pairs = [(claim, new) for claim, _, new in items]
        if kv or published or counters:
            results = await backend.enqueue_claimed_with(pairs, kv or {}, published, counters)
        else:
            results = await backend.enqueue_claimed(pairs)
        return await self.claimed_handles(items, results)

    async def prepare_claimed(self, items: Sequence[tuple[Claim, Task[Any, Any], NewJob]]) -> None:
        """Before jobs built by ``new_job`` are written with their claims (here, or by a
        finish that carries them: ``Outcome.followups``): the instruments are told."""
        news = [new for _, _, new in items]
        for instrument in self.instruments:
            await instrument.enqueuing(self, news)

    async def claimed_handles(
        self, items: Sequence[tuple[Claim, Task[Any, Any], NewJob]], results: Sequence[Claimed]
    ) -> list[tuple[bool, JobHandle[Any] | None]]:
        """After they are written: the store's answer per item as ``submit_claimed`` gives
        it, the jobs written announced and counted as every enqueue's are."""
        out: list[tuple[bool, JobHandle[Any] | None]] = []
        for (_, task, new), (claimed, res) in zip(items, results, strict=True):
            handle = None
            if res is not None:
                (handle,) = await self._handles(task, [new], [res], task.defaults.on_duplicate)
            out.append((claimed, handle))
        return out

    def claimed_written(
        self, items: Sequence[tuple[Claim, Task[Any, Any], NewJob]], results: Sequence[Claimed]
    ) -> None:
        """``claimed_handles`` for a caller that needs no handles (the flows engine, per
        step): the jobs written announced and counted the same, without a handle each. A
        step's follow-up is never refused as a duplicate: its claim decides."""
        wanted = self.bus.wanted  # bus.wants's, inline
        emit = "job.queued" in wanted or "*" in wanted
        for (_, task, new), (_, res) in zip(items, results, strict=True):
            if res is None:
                continue
            if res.replaced or not res.created:  # _announce's rarer statuses
                self._announce(task, [new], [res], task.defaults.on_duplicate)
                continue
            # A created job, as ``_created`` announces and counts it (once per step:
            # without _announce's lists of one).
            if emit:
                self.bus.emit(events.queued(res.id, new.task, new.queue))
            self._count(new.queue, task.name, 1)

    async def enqueue_many(
        self, task: str | Task[Any, Any], items: Iterable[Any], **options: Any
    ) -> list[JobHandle[Any]]:
        """Enqueue one job per item of ``items`` in one round trip; all or nothing is
        refused when one payload is bad."""
        t = _queued(self.registry.resolve(task))
        connection = options.pop("connection", None)
        values = list(items)
        if not values:
            return []
        # The call's ids ascend in its items' order: a store's index of ids takes the batch
        # at its end, one entry after the other, not at random places among its own.
        ids = new_job_ids(len(values))
        if options:
            news = [self.new_job(t, data, options, i) for data, i in zip(values, ids, strict=True)]
        else:
            news = self._new_jobs(t, values, ids)
        results = await self._write(news, connection)
        on_dup = options.get("on_duplicate", t.defaults.on_duplicate)
        return await self._handles(t, news, results, on_dup, connection is None)

    async def _write(
        self, news: list[NewJob], connection: Any, watch: bool = False
    ) -> list[EnqueueResult]:
        backend = await self.store()
        for instrument in self.instruments:
            await instrument.enqueuing(self, news)
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
        return await self.run_task(self.registry.resolve(task), data, timeout, options)

    async def run_task(
        self, t: Task[Any, Any], data: Any, timeout: float | None, options: dict[str, Any]
    ) -> Any:
        """``options`` may set the attempt's ``timeout`` (``task.options(timeout=...)``),
        which ``run()``'s own keyword, the wait, cannot."""
        _queued(t)
        # Held: the store keeps the record (whatever its keep_for) until this caller has
        # the result, and every other caller of run() that hit the same live job too.
        new = self.new_job(t, data, options)
        new.hold = True
        if timeout is not None and "timeout" not in options:
            # Set on the record, not as an option: run(task, timeout=...) alone keeps
            # new_job's cheap path (no call options to check).
            new.timeout = self.attempt_limit(t, timeout)
        handle = await self.submit(t, new, options, watch=True)
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

    def attempt_limit(self, task: Task[Any, Any], wait: float) -> float:
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
        await self.store()
        return await self._waiters.wait(job_id, timeout)

    def result_of(self, job: Job) -> Any:
        if job.state is JobState.COMPLETED:
            task = self.registry.tasks.get(job.task)
            return job.result if task is None else task.typed_result(job.result)
        if job.state is JobState.CANCELLED:
            raise JobCancelled(job)
        if job.state is JobState.FAILED:
            raise JobFailed(job)
        raise ConfigError(f"job {job.id} is {job.state}, not finished")

    # -- inspecting and controlling ----------------------------------------------------
    async def get_job(self, job_id: str) -> Job | None:
        return await (await self.store()).get(job_id)

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        """The records of those ``ids`` that exist, by id (one round trip where the store
        can: the hooks read a page of events' jobs at once)."""
        return {job.id: job for job in await (await self.store()).get_many(ids)}

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
        st = None if state is None else _state(state)
        return await (await self.store()).query(
            queue=queue, state=st, task=task, limit=limit, offset=offset, after=after
        )

    async def counts(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """``{queue: {state: n}}`` for ``queues``, or for every queue but the private ones
        (``private_queue``) when none are named."""
        found = await (await self.store()).counts(queues)
        if queues is None:
            return {q: n for q, n in found.items() if not private_queue(q)}
        return found

    async def cancel(self, job_id: str) -> JobState | None:
        """Cancel a queued job now; ask an active one to stop. None if there is no job."""
        return await (await self.store()).cancel(job_id)

    async def retry(self, job_id: str, data: Any = KEEP, *, by: str | None = None) -> bool:
        """Put a failed or cancelled job back in its queue with fresh attempts.

        With ``data`` it runs with that payload instead: checked as an enqueue checks it
        (the task's model when this app defines the task, else JSON and ``max_payload``;
        PayloadError says what is wrong) and set in the same step as the retry. Its
        ``job.queued`` event names ``by`` and keeps the payload it replaced."""
        store = await self.store()
        if data is KEEP:
            return await store.retry(job_id)
        job = await store.get(job_id)
        if job is None:
            return False
        task = self.registry.tasks.get(job.task)
        if task is None:
            raw = codec.encode_payload(data, self.max_payload, f"payload for task {job.task!r}")
        else:
            raw = task.prepare(data)[1]
        return await store.retry(job_id, raw, by)

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
        return await (await self.store()).purge(
            states=sts,
            older_than=seconds(older_than, "older_than"),
            keep_last=keep_last,
            queue=queue,
        )

    async def pause(self, queue: str) -> None:
        await (await self.store()).pause(check_name(queue, "queue"))

    async def resume(self, queue: str) -> None:
        await (await self.store()).resume(check_name(queue, "queue"))

    async def paused(self) -> set[str]:
        """Every paused queue."""
        return await (await self.store()).paused()

    async def is_paused(self, queue: str) -> bool:
        return queue in await (await self.store()).paused()

    async def workers(self) -> list[WorkerInfo]:
        return await (await self.store()).workers()

    async def pause_worker(self, worker_id: str) -> None:
        """Ask a live worker to claim nothing more (its running jobs go on); it follows
        within its heartbeat interval."""
        await self._control_worker(worker_id, "pause")

    async def resume_worker(self, worker_id: str) -> None:
        """Let a paused worker (``paused=True``, ``--paused``) claim again; it follows
        within half a second."""
        await self._control_worker(worker_id, "resume")

    async def _control_worker(self, worker_id: str, asked: str) -> None:
        live = [w.id for w in await self.workers()]
        if worker_id not in live:
            raise ConfigError(
                f"no live worker {worker_id!r}; live workers: {', '.join(live) or 'none'} "
                "(workhorse status lists them)"
            )
        await self.backend.kv_set(worker_control_key(worker_id), asked, WORKER_CONTROL_TTL)

    async def events(self, after: int = 0, limit: int = 1000) -> list[Event]:
        return await (await self.store()).events(after, limit)

    async def job_events(self, job_id: str, limit: int = JOB_EVENTS) -> list[Event]:
        """The job's newest ``limit`` events still in the log, oldest first, read by its id
        (the cost does not grow with other jobs' events)."""
        return await (await self.store()).job_events(job_id, limit)

    async def events_head(self) -> int:
        """The id of the newest event in the log (0 when empty)."""
        return await (await self.store()).events_head()

    # -- schedules ---------------------------------------------------------------------
    async def add_schedule(
        self,
        name: str,
        task: str | Task[Any, Any],
        cron: str | dict[str, Any] | CronSpec,
        data: Any = None,
    ) -> Schedule:
        """Add or replace a schedule at run time; every worker picks it up within seconds."""
        t = _queued(self.registry.resolve(task))
        spec = parse_cron(cron)
        if data is not None:
            spec = replace(spec, data=data)
        t.prepare(spec.data)  # a payload the task refuses is refused now, not at each tick
        schedule = Schedule(check_name(name, "schedule"), t.name, spec, "api")
        await schedules.put(await self.store(), schedule)
        return schedule

    async def remove_schedule(self, name: str) -> bool:
        return await schedules.remove(await self.store(), name)

    async def schedules(self) -> list[ScheduleInfo]:
        """Every stored schedule with its next run and its last fired job."""
        backend = await self.store()
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


def _queued(task: Task[Any, Any]) -> Task[Any, Any]:
    """The task, if its jobs may be enqueued: a mode='http' task is an endpoint only."""
    if not task.defaults.queued:
        raise ConfigError(
            f"task {task.name!r} has mode='http': call it over HTTP (workhorse.http), or "
            "give it mode='both' to enqueue it too"
        )
    return task


WORKER_CONTROL_TTL = 86_400.0  # worker ids are random per run: the flag outlives none


def worker_control_key(worker_id: str) -> str:
    """The store key a worker polls for ``pause`` / ``resume``."""
    return f"worker-control:{worker_id}"


def _state(value: JobState | str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        raise ConfigError(
            f"unknown state {value!r}; valid: {', '.join(s.value for s in JobState)}"
        ) from None


def _expire(fut: asyncio.Future[Job | None]) -> None:
    """A wait's timeout: None ends it (RunTimeout)."""
    if not fut.done():
        fut.set_result(None)


class _Waiters:
    """One pump per client turns the backend's finish notifications into per-job futures."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._futs: dict[str, list[asyncio.Future[Job | None]]] = {}
        self._pump: asyncio.Task[None] | None = None

    async def wait(self, job_id: str, timeout: float | None) -> Job:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Job | None] = loop.create_future()
        self._futs.setdefault(job_id, []).append(fut)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run(), name="workhorse-waiters")
        # A timer that answers None, not asyncio.timeout: run() waits once per call, and
        # the timeout's context was a tenth of a memory round trip's instructions.
        timer = None if timeout is None else loop.call_at(loop.time() + timeout, _expire, fut)
        try:
            job = await fut
        finally:
            if timer is not None:
                timer.cancel()
            futs = self._futs.get(job_id)
            if futs is not None and fut in futs:
                futs.remove(fut)
                if not futs:
                    del self._futs[job_id]
        if job is None:
            raise RunTimeout(job_id, typing.cast(float, timeout))
        return job

    async def _run(self) -> None:
        backend = self.client.backend
        interval = self.client.settings.poll_interval
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
