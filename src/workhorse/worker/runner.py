"""Run one attempt of a job and turn whatever happens into an Outcome."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Coroutine
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import orjson

from workhorse.backoff import Exponential, next_delay
from workhorse.client import client_of
from workhorse.context import JobContext
from workhorse.errors import PayloadError, error_info
from workhorse.job import Lease, Outcome, OutcomeKind
from workhorse.runtimes.common import RemoteError
from workhorse.worker.limiter import Limiter, Slot

if TYPE_CHECKING:
    from workhorse.client import Client, HasClient
    from workhorse.runtimes.command import CommandRunner
    from workhorse.runtimes.process import ProcessPool
    from workhorse.task import Task

log = logging.getLogger("workhorse.worker")

_DEFAULT_BACKOFF = Exponential()


class Interrupted(Exception):
    """The worker stopped the attempt: shutdown (back to the queue) or a cancel."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Runner:
    def __init__(
        self, client: Client | HasClient, threads: Executor, concurrency: int | None = None
    ) -> None:
        self.client = client = client_of(client)
        self.threads = threads
        self.limiter = Limiter(client.backend)
        self.slots: dict[str, Slot] = {}  # concurrency slots held, by lease token, for renewal
        # The worker's total slots, which bound how many children can be busy at once.
        s = client.settings
        self.concurrency = concurrency or s.concurrency * len(s.queues)
        self._pool: ProcessPool | None = None
        self._commands: CommandRunner | None = None
        self._started = False
        self.max_payload = s.max_payload  # read once: a property chain per job costs
        self.job_timeout = s.job_timeout  # for attempts of tasks with no timeout of their own

    # -- the other runtimes ------------------------------------------------------------
    @property
    def pool_size(self) -> int:
        """Children kept warm: the ``process_pool`` setting, else the worker's total
        concurrency, at most one per CPU (process tasks are there for CPU-bound work)."""
        size = self.client.settings.process_pool
        if size is None:
            size = min(self.concurrency, os.cpu_count() or 1)
        return max(1, size)

    @property
    def process_pool(self) -> ProcessPool:
        if self._pool is None:
            from workhorse.runtimes.process import ProcessPool

            self._pool = ProcessPool(self.client, self.pool_size)
        return self._pool

    @property
    def commands(self) -> CommandRunner:
        if self._commands is None:
            from workhorse.runtimes.command import CommandRunner

            self._commands = CommandRunner(self.client, self.pool_size)
        return self._commands

    def start(self) -> None:
        """Warm the process pool when the app has process tasks (on the worker's loop)."""
        self._started = True
        if any(t.defaults.runtime == "process" for t in self.client.registry.tasks.values()):
            self.process_pool.warm()

    def close_now(self) -> None:
        """Kill every child process and program, without awaiting: the worker stopped."""
        pool, self._pool = self._pool, None
        commands, self._commands = self._commands, None
        self._started = False
        if pool is not None:
            pool.close_now()
        if commands is not None:
            commands.close_now()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        commands, self._commands = self._commands, None
        self._started = False
        if pool is not None:
            await pool.close()
        if commands is not None:
            await commands.close()

    async def _external(
        self,
        task: Task[Any, Any],
        lease: Lease,
        ctx: JobContext,
        deadline: asyncio.Timeout | None,
        timeout: float | None,
    ) -> bytes:
        if task.defaults.runtime == "process":
            started = None
            if deadline is not None and timeout is not None:
                # The task's timeout counts from its child's start of the job: a child
                # still starting (importing the app, at most a minute) is the pool's time.
                loop = asyncio.get_running_loop()
                deadline.reschedule(None)

                def started() -> None:
                    deadline.reschedule(loop.time() + timeout)

            return await self.process_pool.run(task, lease, ctx, started)
        return await self.commands.run(task, lease, ctx)

    # -- attempts ----------------------------------------------------------------------
    def run(self, lease: Lease, ctx: JobContext) -> Coroutine[Any, Any, Outcome]:
        """The attempt to await. The common case (a known task without limits whose payload
        decodes) is the attempt's own coroutine, not one of the runner's around it, which
        every job would pay for; any other case goes the whole way (``_run``)."""
        task = self.client.registry.tasks.get(lease.task)
        if task is None or task.limited or not self._started:
            return self._run(lease, ctx)
        try:
            data = task.decode(lease.data)
        except Exception as exc:
            return _given(self._undecodable(task, exc, ctx))
        return self._attempt(task, lease, data, ctx)

    async def _run(self, lease: Lease, ctx: JobContext) -> Outcome:
        if not self._started:
            self.start()
        task = self.client.registry.tasks.get(lease.task)
        if task is None:
            return await self._unknown(lease)
        try:
            data = task.decode(lease.data)
        except Exception as exc:
            return self._undecodable(task, exc, ctx)
        if task.limited:
            slot, wait = await self.limiter.acquire(task, data, lease)
            if wait is not None:
                # A full limit is no failure: come back later, attempt refunded.
                return _outcome(ctx, "retry", delay=wait, refund=True)
            if slot is not None:
                self.slots[lease.token] = slot
                try:
                    return await self._attempt(task, lease, data, ctx)
                finally:
                    self.slots.pop(lease.token, None)
                    try:
                        await self.limiter.release(slot)
                    except Exception:  # the slot's TTL frees it anyway
                        log.exception("job %s: could not release its limit slot", lease.job_id)
        return await self._attempt(task, lease, data, ctx)

    @staticmethod
    def _undecodable(task: Task[Any, Any], exc: Exception, ctx: JobContext) -> Outcome:
        if isinstance(exc, orjson.JSONDecodeError):
            message = f"record could not be decoded: payload is not JSON: {exc}"
        else:  # a payload the task's model refuses cannot succeed on a retry
            message = f"payload does not validate for task {task.name!r}: {exc}"
        return Outcome(
            "failed",
            error=error_info(PayloadError(message), tb=False),
            logs=ctx.drain_logs(),
            logs_dropped=ctx.take_dropped(),
        )

    async def _attempt(
        self, task: Task[Any, Any], lease: Lease, data: Any, ctx: JobContext
    ) -> Outcome:
        timeout = lease.timeout
        # process and command attempts hand back the result's bytes, already encoded
        external = task.defaults.runtime != "inline"
        try:
            # An async task's own coroutine is awaited as it is: a coroutine of the runner's
            # around it would cost every job one more object and level of awaiting.
            run: Awaitable[Any]
            deadline = None if timeout is None else asyncio.timeout(timeout)
            if external:
                run = self._external(task, lease, ctx, deadline, timeout)
            elif task.is_async:
                run = task.fn(*task.args(data, ctx))
            else:
                run = self._thread(task, data, ctx)
            if timeout is None or deadline is None:  # the worker's pulse ends it past job_timeout
                result = await run
            else:
                try:
                    async with deadline:
                        result = await run
                except TimeoutError:
                    if deadline.expired():
                        raise _TimedOut(timeout) from None
                    raise
            raw = result if external else task.encode_result(result, self.max_payload)
        except asyncio.CancelledError as exc:
            me = asyncio.current_task()
            if ctx.timed_out and me is not None and self.job_timeout is not None:
                me.uncancel()  # the cancel was the timeout's: the attempt failed
                return self._failure(task, lease, _TimedOut(self.job_timeout), ctx)
            if not ctx.cancelled and me is not None and not me.cancelling():
                # The handler raised CancelledError itself; nobody asked it to stop. As a
                # shutdown it would go back to the queue, attempt refunded, forever.
                return self._failure(task, lease, exc, ctx)
            return self.interrupted(ctx)
        except (Exception, SystemExit) as exc:  # a worker never dies of one job
            return self._failure(task, lease, exc, ctx)
        if ctx.timed_out and (me := asyncio.current_task()) is not None and me.cancelling():
            me.uncancel()  # the handler swallowed the timeout's cancel and returned
        logs, dropped = ctx.unwritten()
        return Outcome("completed", result=raw, logs=logs, logs_dropped=dropped)

    @staticmethod
    def interrupted(ctx: JobContext) -> Outcome:
        """The outcome of an attempt the worker stopped: a requested cancel, or shutdown."""
        if ctx.cancelled:
            return Outcome(
                "cancelled",
                error={"type": "Cancelled", "traceback": "", "message": "cancelled while running"},
                logs=ctx.drain_logs(),
                logs_dropped=ctx.take_dropped(),
            )
        # Shutdown: back to the queue at once, and the attempt does not count.
        return _outcome(ctx, "retry", refund=True)

    async def _thread(self, task: Task[Any, Any], data: Any, ctx: JobContext) -> Any:
        args = task.args(data, ctx)
        call = self.threads.submit(functools.partial(task.fn, *args))
        try:
            return await asyncio.wrap_future(call)
        except asyncio.CancelledError:
            if call.running():
                # The thread cannot be stopped; it runs on while its slot is given back
                # (the pool grows, so later sync jobs still get a thread).
                log.warning(
                    "job %s: a sync task was interrupted but its thread runs on", ctx.job_id
                )
            raise

    def _failure(
        self, task: Task[Any, Any], lease: Lease, exc: BaseException, ctx: JobContext
    ) -> Outcome:
        retry = not isinstance(exc, PayloadError)
        if isinstance(exc, _TimedOut):
            error = {"type": "TimeoutError", "message": str(exc), "traceback": ""}
        elif isinstance(exc, RemoteError):  # raised in a child: keep its own account
            error = exc.info
            retry = exc.retry
        else:
            error = error_info(exc)
        logs, dropped = ctx.unwritten()
        if lease.attempts < lease.max_attempts and retry:
            try:
                delay = next_delay(task.defaults.backoff.delay(lease.attempts, exc))
            except Exception:
                # A broken backoff must not leave the job leased with no outcome.
                log.exception(
                    "job %s: the backoff of task %r failed; using the default",
                    lease.job_id,
                    task.name,
                )
                delay = _DEFAULT_BACKOFF.delay(lease.attempts, exc)
            return Outcome("retry", error=error, delay=delay, logs=logs, logs_dropped=dropped)
        return Outcome("failed", error=error, logs=logs, logs_dropped=dropped)

    async def _unknown(self, lease: Lease) -> Outcome:
        settings = self.client.settings
        backend = self.client.backend
        age = await backend.now() - lease.created_at
        known = ", ".join(sorted(self.client.registry.tasks)) or "none"
        error = {
            "type": "UnknownTask",
            "traceback": "",
            "message": f"no task {lease.task!r} on this worker (it knows: {known})",
        }
        if age < settings.unknown_task_window:
            # A rolling deploy: a newer worker may know it. Do not spend an attempt.
            return Outcome("retry", error=error, delay=settings.unknown_task_delay, refund=True)
        error["message"] += (
            f"; gave up after {settings.unknown_task_window:g}s. Deploy a "
            "worker that registers it, then retry the job."
        )
        return Outcome("failed", error=error)


class _TimedOut(Exception):
    def __init__(self, timeout: float) -> None:
        super().__init__(f"timed out after {timeout:g}s")


async def _given(outcome: Outcome) -> Outcome:
    return outcome


def _outcome(ctx: JobContext, kind: OutcomeKind, **fields: Any) -> Outcome:
    """An outcome carrying the attempt's unwritten log lines and the count it dropped."""
    logs, dropped = ctx.unwritten()
    return Outcome(kind, logs=logs, logs_dropped=dropped, **fields)
