"""The worker: claims jobs from its queues, runs attempts, renews leases, reclaims the
leases of dead workers, and shuts down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from workhorse import events
from workhorse.backends import Backend, RenewResult
from workhorse.client import client_of, worker_control_key
from workhorse.context import JobContext
from workhorse.errors import ConfigError, error_info
from workhorse.job import FINISHED_STATES, JobState, Lease, Outcome, WorkerInfo
from workhorse.observability import logs, observers
from workhorse.scheduler.ticker import Ticker
from workhorse.settings import check_name, check_queues
from workhorse.worker.finisher import Finisher
from workhorse.worker.limiter import extend
from workhorse.worker.renewal import RenewThread, Running, renewal_url
from workhorse.worker.runner import Runner
from workhorse.worker.slots import Slots
from workhorse.worker.solo import SOLO_AFTER, Solo
from workhorse.worker.threads import DaemonThreads

if TYPE_CHECKING:
    from workhorse.client import Client, HasClient
    from workhorse.flows import Engine
    from workhorse.observability import tracing

log = logging.getLogger("workhorse.worker")

# A queue's slots; a job claimed ahead waits in them with the start of its claim span.
_Slots = Slots[tuple[Running, int]]

PULSE = 0.25  # seconds between the loop's stamps that show the thread it is alive

# Seconds outcomes still get to land after the shutdown grace is over (interrupted jobs
# are put back in their queue by an outcome too).
_LAST_WRITES = 5.0


def parse_queues(
    queues: Mapping[str, int] | Sequence[str] | str, concurrency: int
) -> dict[str, int]:
    """``"default,priority:5"`` or ``["default"]`` or ``{"default": 10}`` → per-queue slots."""
    items: list[tuple[str, int]] = []
    if isinstance(queues, Mapping):
        items = list(queues.items())
    else:
        names = queues.split(",") if isinstance(queues, str) else list(queues)
        for raw in names:
            # "name:N" sets N slots; a colon in the name itself ("tenant:reports") stays.
            name, _, count = raw.strip().rpartition(":")
            if not name or not count.isdigit():
                name, count = raw.strip(), ""
            items.append((name, int(count) if count else concurrency))
    out: dict[str, int] = {}
    for name, n in items:
        check_name(name, "queue")
        if n < 1:
            raise ConfigError(f"concurrency for queue {name!r} must be >= 1, got {n}")
        out[name] = n
    return out


class Worker:
    def __init__(
        self,
        client: Client | HasClient,
        *,
        queues: Mapping[str, int] | Sequence[str] | str | None = None,
        concurrency: int | None = None,
        lease: float | None = None,
        poll_interval: float | None = None,
        shutdown_grace: float | None = None,
        reclaim_interval: float | None = None,
        heartbeat_interval: float | None = None,
        burst: bool = False,
        scheduler: bool = True,
        paused: bool = False,
        steps: Engine | None = None,
        prefetch: int | None = None,
    ) -> None:
        self.client = client = client_of(client)
        s = client.settings
        self.queues = parse_queues(queues or s.queues, concurrency or s.concurrency)
        self.lease = lease or s.lease
        self.poll_interval = poll_interval or s.poll_interval
        self.shutdown_grace = s.shutdown_grace if shutdown_grace is None else shutdown_grace
        self.reclaim_interval = reclaim_interval or s.reclaim_interval
        self.heartbeat_interval = heartbeat_interval or s.heartbeat_interval
        self.burst = burst  # stop when the queues are empty
        self.scheduler = scheduler and not burst  # fire cron ticks (every worker may)
        self.steps = steps  # the app's flows, when it has any: steps run through them
        self._check_queues()
        # Cleared while paused (``paused=True``, ``workhorse pause --worker ID``): no claims.
        self._resumed = asyncio.Event()
        if not paused:
            self._resumed.set()
        self.id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        self.processed = 0
        self._running: dict[str, Running] = {}
        if prefetch is not None and prefetch < 0:
            raise ConfigError(f"prefetch must be >= 0 (0: claim only free slots), got {prefetch}")
        # prefetch: jobs claimed ahead of free slots per queue (a Worker option; None: as
        # many as end within slots.HOLD_FOR seconds, see slots.py).
        remote = client.backend.capabilities.multi_machine
        self._slots: dict[str, _Slots] = {
            q: Slots(n, prefetch, remote) for q, n in self.queues.items()
        }
        self._stopping = asyncio.Event()
        self._grace_over = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started_at = time.time()
        self._threads = DaemonThreads()
        self._runner = Runner(client, self._threads, concurrency=sum(self.queues.values()))
        self._finisher: Finisher | None = None
        self._observers = observers.Observers(client)  # replaced by the client's own at run()
        self._tally = self._observers.tally
        self._tracing: tracing.Tracing | None = None
        self._signals = 0
        self._stop_at: float | None = None
        self._exit_by: float | None = None  # when the last writes of a shutdown give up
        self.unwritten = 0  # outcomes given up at shutdown: the store did not take them
        self._signal_loop: asyncio.AbstractEventLoop | None = None
        self._waits: set[asyncio.Future[list[Lease] | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._renew_period = self.renew_period([self.lease])
        self._renew_wake = asyncio.Event()
        self._renewer: RenewThread | None = None
        self.pulse_at = time.monotonic()  # when the loop last showed it runs
        self._job_timeout = s.job_timeout
        self._solo = Solo()  # runs a job that stalled repeatedly with nothing beside it
        self._pulse_timer: asyncio.TimerHandle | None = None
        # Retention also runs after this many finishes, not only once a minute: the memory
        # store lives in the worker's process, and a fast worker would otherwise hold a
        # minute of finished jobs (millions) between two passes.
        keep = [k for k in (s.keep_completed, s.keep_failed) if k]
        self._purge_every = max(1_000, min(keep)) if keep else 0
        # Never reached without retention settings: one comparison per job either way.
        self._next_purge: float = self._purge_every or math.inf
        self._retention_due = asyncio.Event()
        # The worker went from idle to busy or back: its record should say so soon.
        self._busy_changed = asyncio.Event()

    def _check_queues(self) -> None:
        """A queue that is a typo (a task's, or one consumed here) fails start-up."""
        check_queues(
            {name: t.defaults.queue for name, t in self.client.registry.tasks.items()},
            self.queues,
            self.client.settings.known_queues,
        )
        idle = sorted(
            {t.defaults.queue for t in self.client.registry.tasks.values()} - set(self.queues)
        )
        if idle:
            log.info(
                "queues %s are left to other workers (this one consumes %s)",
                idle,
                list(self.queues),
            )

    # -- control -----------------------------------------------------------------------
    @property
    def active(self) -> int:
        return len(self._running)

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        """Claim nothing more until ``resume()``; running jobs go on."""
        if not self._stopping.is_set() and self._resumed.is_set():
            self._resumed.clear()
            log.info("worker %s paused", self.id)
            self._busy_changed.set()  # the heartbeat says so soon
            for waiter in self._waits:  # a wait may claim when it ends (wait_claim)
                waiter.cancel()

    def resume(self) -> None:
        if not self._resumed.is_set():
            self._resumed.set()
            log.info("worker %s resumed", self.id)
            self._busy_changed.set()

    def stop(self) -> None:
        """Stop claiming and let running jobs finish within the grace period. A second
        call ends the grace period: what still runs goes back to its queue at once."""
        if self._stopping.is_set():
            self._grace_over.set()
        elif self._stop_at is None:
            self._stop_at = time.monotonic()
        self._stopping.set()
        self._resumed.set()  # a paused consumer wakes, sees the stop and ends
        for slots in self._slots.values():
            self._release_held(slots)
        for waiter in self._waits:
            waiter.cancel()
        self._wake_consumers()

    def _wake_consumers(self) -> None:
        for slots in self._slots.values():
            slots.freed.set()

    def stop_threadsafe(self) -> None:
        """``stop()`` from another thread than the worker's event loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.stop)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the worker gracefully; a second one ends the grace period,
        a third exits at once. The handlers are removed when ``run()`` returns."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        self._signal_loop = loop

    def _remove_signal_handlers(self) -> None:
        loop, self._signal_loop = self._signal_loop, None
        if loop is not None and not loop.is_closed():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals >= 3:
            log.error("third signal: exiting now")
            os._exit(1)
        log.warning(
            "%s: %s",
            sig.name,
            "stopping (send again to interrupt running jobs)"
            if self._signals == 1
            else "interrupting running jobs",
        )
        self.stop()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- main loop ---------------------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.client.open()
        self._runner.start()
        backend = self.client.backend
        self._finisher = Finisher(backend)
        self._observers = await observers.acquire(self.client)
        self._tally = self._observers.tally
        self._tracing = None
        if self.client.instruments:  # tracing is one: its module loads only for an app with it
            from workhorse.observability import tracing

            self._tracing = tracing.of(self.client)
        log.info("worker %s consuming %s on %s", self.id, self.queues, backend.url)
        self._pulse()  # also the job_timeout check, so on every backend
        url = renewal_url(self.client)
        if url is not None:
            self._renewer = RenewThread(url, self, self._loop)
            self._renewer.start()
        side = [
            asyncio.create_task(self._renew_loop(), name="workhorse-renew"),
            asyncio.create_task(self._maintenance_loop(), name="workhorse-maintenance"),
            asyncio.create_task(self._heartbeat_loop(), name="workhorse-heartbeat"),
            asyncio.create_task(self._control_loop(), name="workhorse-control"),
        ]
        if self.scheduler:
            ticker = Ticker(self.client, self.id)
            side.append(asyncio.create_task(ticker.run(self._stopping), name="workhorse-cron"))
        consumers = [
            asyncio.create_task(self._consume(q), name=f"workhorse-consume-{q}")
            for q in self.queues
        ]
        try:
            await self._stopping.wait()
            # Consumers are not cancelled: one in the middle of a claim must keep what it
            # claimed, or those jobs would sit leased until their lease expires.
            await asyncio.gather(*consumers, return_exceptions=True)
            await self._drain()
        finally:
            # Reached early when run() itself is cancelled: no job may be left leased, so
            # whatever still runs is interrupted and goes back to its queue now.
            for t in consumers:
                t.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
            for slots in self._slots.values():
                self._release_held(slots)
            if self._running:
                await self._interrupt_all()
            await self._write_outcomes()
            for t in side:
                t.cancel()
            # A cancel can be lost inside a client library; never hang the exit on one.
            _, stuck = await asyncio.wait(side, timeout=5)
            for t in stuck:
                log.error("side task %s did not stop; leaving it", t.get_name())
            if self._renewer is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._renewer.stop(), self._exit_left())
            if self._pulse_timer is not None:
                self._pulse_timer.cancel()
            self._remove_signal_handlers()
            await observers.release(self.client)
            try:
                # Bounded: with the store down, the record expires on its own (its ttl).
                async with asyncio.timeout(self._exit_left()):
                    await backend.remove_worker(self.id)
            except Exception:
                log.exception("could not remove worker record")
            try:
                await self._runner.close()
            except Exception:
                log.exception("could not stop the runtime's child processes")
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()
            log.info("worker %s stopped after %d job(s)", self.id, self.processed)

    async def _drain(self) -> None:
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks:
            log.info("waiting up to %gs for %d running job(s)", self.shutdown_grace, len(tasks))
            all_done = asyncio.ensure_future(asyncio.wait(tasks))
            grace_over = asyncio.ensure_future(self._grace_over.wait())
            await asyncio.wait(
                [all_done, grace_over],
                timeout=self.shutdown_grace,
                return_when=asyncio.FIRST_COMPLETED,
            )
            all_done.cancel()
            grace_over.cancel()
        await self._interrupt_all()
        await self._write_outcomes()

    async def _write_outcomes(self) -> None:
        """Let pending outcomes land within the shutdown grace (counted from the first
        stop), or ``_LAST_WRITES`` seconds once it is over; a store that takes none of them
        cannot keep the worker from exiting."""
        if self._finisher is None:
            return
        if self._exit_by is None:
            left = 0.0
            if not self._grace_over.is_set():
                start = self._stop_at if self._stop_at is not None else time.monotonic()
                left = start + self.shutdown_grace - time.monotonic()
            self._exit_by = time.monotonic() + max(left, _LAST_WRITES)
        lost = await self._finisher.drain(self._exit_left())
        if lost:
            self.unwritten += lost
            log.error(
                "%d outcome(s) could not be written before the shutdown grace ended (is the "
                "store reachable?); their jobs stay leased and run again once their leases "
                "expire",
                lost,
            )

    def _exit_left(self) -> float:
        """Seconds the rest of a shutdown may still wait on the store."""
        if self._exit_by is None:
            return _LAST_WRITES
        return max(0.5, self._exit_by - time.monotonic())

    async def _interrupt_all(self) -> None:
        left = [(r.task, r.finishing) for r in self._running.values() if r.task is not None]
        # A job whose outcome is with the finisher is done: its write goes on (shielded).
        unfinished = sum(not finishing for _, finishing in left)
        if unfinished:
            log.warning("putting %d unfinished job(s) back in their queue", unfinished)
        for t, _ in left:
            t.cancel()
        if left:
            await asyncio.gather(*(t for t, _ in left), return_exceptions=True)

    async def _consume(self, queue: str) -> None:
        backend = self.client.backend
        slots = self._slots[queue]
        # The loop's own create_task: asyncio.create_task looks the loop up and names the
        # task, a Python call per job for nothing here.
        spawn = asyncio.get_running_loop().create_task
        # What the last wait claimed (wait_claim): jobs it leased run before anything else;
        # [] waits next, its own claim standing for the worker's; None: claim.
        woken: list[Lease] | None = None
        while woken or not self._stopping.is_set():
            if not woken:
                if not self._resumed.is_set():
                    woken = None
                    await self._resumed.wait()
                    continue
                free = slots.free()
                if free <= 0 or self._solo.busy:  # a job runs alone: claim nothing beside it
                    woken = None
                    slots.freed.clear()
                    await slots.freed.wait()
                    continue
                if self._stopping.is_set():
                    break
            claimed_at = time.time_ns()  # the start of the claim span, when tracing
            waited = woken is not None
            if waited:
                leases, woken = woken, None
            else:
                try:
                    leases = await backend.claim([queue], self.id, free, self.lease)
                except Exception:
                    log.exception("claim from %r failed; retrying", queue)
                    await asyncio.sleep(min(self.poll_interval, 1.0))
                    continue
            if not leases:
                if self._stopping.is_set():
                    break  # stop() came during the claim: do not wait a poll interval
                if self.burst:
                    if slots.used:
                        slots.empty_since = None
                    elif slots.empty_since is None:
                        slots.empty_since = time.monotonic()
                    if self._burst_done():
                        self.stop()
                        return
                # A burst worker must notice the end soon; a blocking store would hold it.
                wait = min(self.poll_interval, 0.1) if self.burst else self.poll_interval
                waiter = asyncio.ensure_future(
                    backend.wait_claim(queue, self.id, free, self.lease, wait)
                )
                self._waits.add(waiter)
                try:
                    woken = await waiter
                except asyncio.CancelledError:
                    # stop() cancels the wait, and that is no reason to end; a cancel of
                    # this consumer itself is.
                    me = asyncio.current_task()
                    if me is not None and me.cancelling():
                        raise
                except Exception:
                    log.exception("waiting for jobs on %r failed", queue)
                    await asyncio.sleep(min(self.poll_interval, 1.0))
                finally:
                    self._waits.discard(waiter)
                continue
            slots.empty_since = None
            if not self._running:
                self._busy_changed.set()
            slots.used += len(leases)
            shortest = self._renew_period
            claimed = time.monotonic()  # once per batch: the attempts start now
            began = time.time()  # the same, for the figures (queue wait, run time)
            self._tally.claimed(leases, began)
            for lease in leases:
                running = Running(lease, JobContext(self.client, lease), started=claimed)
                # A job reclaimed from this very worker replaces its lost older attempt.
                self._running[lease.job_id] = running
                # Unnamed: a name costs a format per job, and blocker() finds a job by its task.
                if slots.running < slots.size:  # a free slot (no job waits for one then)
                    slots.running += 1
                    running.task = spawn(self._attempt(running, slots, claimed_at, began))
                else:  # claimed ahead: it starts in the first slot a handler gives up
                    running.started = math.inf  # no job_timeout before it starts
                    slots.held.append((running, claimed_at))
                if lease.lease < shortest * 3:
                    shortest = lease.lease / 3
            if self._stopping.is_set():
                self._release_held(slots)  # stop() came during the claim
            if shortest < self._renew_period:
                # A job with a shorter lease than the renew loop is sleeping for.
                self._renew_wake.set()
                if self._renewer is not None:
                    self._renewer.wake()
            if waited:
                # The next wait acts on what this wait's claim found (a job left due ends
                # it at once), so no claim in between; one loop turn first lets a job that
                # ends at once send its finish ahead of that wait.
                woken = []
                await asyncio.sleep(0)

    def _burst_done(self) -> bool:
        """Every queue came back empty for a while and nothing runs. One queue's view is
        not enough: another consumer may be between a finished job and its next claim."""
        if self._running:
            return False
        now = time.monotonic()
        return all(
            s.empty_since is not None and now - s.empty_since > 0.2 for s in self._slots.values()
        )

    async def _attempt(
        self, running: Running, slots: _Slots, claimed_at: int, began: float
    ) -> None:
        lease = running.lease
        bus = self.client.bus
        if logs.active:
            logs.enter(lease)
        trace: tracing.Attempt | None = None
        written: asyncio.Future[bool] | None = None
        landed: str | None = None  # the event of the outcome the store took
        try:
            if bus.every or "job.started" in bus.wanted:  # no call per job
                bus.emit(events.started(lease, self.id))
            if self._tracing is not None:
                trace = await self._trace(lease, claimed_at)
            try:
                solo = self._solo
                alone = lease.stalls >= SOLO_AFTER
                if alone or solo.waiting or solo.active:  # attributes: read on every job
                    await (solo.turn() if alone else solo.quiet())
                    running.started = time.monotonic()  # job_timeout counts from here
                if not alone:
                    solo.others += 1
                try:
                    if self.steps is None:
                        # job_timeout and the run time that sizes the auto prefetch count
                        # from here, not from the claim: a batch's last job waits on the
                        # loop for the others, which read as a long run.
                        # (not ``began``: the tally's run time counts from the claim)
                        running.started = start = time.monotonic()
                        outcome = await self._runner.run(lease, running.ctx)
                        running.ran = time.monotonic() - start
                    else:
                        # a partial: its call is no Python frame, once per job
                        outcome = await self.steps.run(
                            lease, running.ctx, functools.partial(self._handler, running)
                        )
                finally:
                    if alone:
                        solo.end()
                        self._wake_consumers()
                    else:
                        solo.others -= 1
                        if solo.waiting:
                            solo.poke()
            except asyncio.CancelledError:
                # Interrupted outside the handler (e.g. looking up an unknown task): the
                # job must still leave this worker, or it sits leased until expiry.
                outcome = self._runner.interrupted(running.ctx)
            except Exception as exc:  # the runner turns errors into outcomes; a bug in it
                # must still end the job with the reason rather than leave it leased.
                log.exception("job %s: the worker failed to run it", lease.job_id)
                ctx = running.ctx
                outcome = Outcome(
                    "failed",
                    error=error_info(exc),
                    logs=ctx.drain_logs(),
                    logs_dropped=ctx.take_dropped(),
                )
            assert self._finisher is not None
            if trace is not None:
                trace.ran(outcome)
            written = self._finisher.submit(lease, outcome)
            running.finishing = True
            slots.ran(running.ran)
            slots.used -= 1
            slots.finishing += 1
            if slots.held:
                self._pass_slot(slots)
            else:  # the common case inline: a call less per job
                slots.running -= 1
            slots.freed.set()
            # The outcome's write, then its event if the store took it: inline, since a
            # coroutine of its own costs every job a frame and an object to collect.
            if await written:
                landed = events.outcome_type(outcome)
                if bus.every or landed in bus.wanted:
                    bus.emit(events.finished(landed, lease, outcome))
            else:
                self._dropped(lease, outcome)
            if self.steps is not None:
                after = self.steps.finished(outcome, running.ctx, landed is not None)
                if after is not None:  # most steps need none: no coroutine each
                    await after
        except asyncio.CancelledError:
            # Cancelled while finishing: the shielded write goes on in the finisher.
            pass
        except Exception:  # the store failing is retried in the finisher; anything else:
            log.exception("job %s: its outcome could not be written", lease.job_id)
        finally:
            if trace is not None:
                settled = written is not None and written.done() and not written.cancelled()
                trace.close(bool(written.result()) if settled and written is not None else None)
            self._tally.finished(lease.queue, lease.task, began, landed)
            if self._running.get(lease.job_id) is running:
                del self._running[lease.job_id]
            if running.finishing:
                slots.finishing -= 1
            else:
                slots.used -= 1
                self._pass_slot(slots)
            slots.freed.set()
            self.processed += 1
            if not self._running:
                self._busy_changed.set()
            if self.processed >= self._next_purge:
                self._next_purge = self.processed + self._purge_every
                self._retention_due.set()

    async def _handler(self, running: Running) -> Outcome:
        """A job's handler under the flow engine, timed alone (as above): a step's events
        and follow-ups around it are the worker's and the store's work, not its run."""
        running.started = began = time.monotonic()
        outcome = await self._runner.run(running.lease, running.ctx)
        running.ran = time.monotonic() - began
        return outcome

    def _pass_slot(self, slots: _Slots) -> None:
        """A handler gives up its slot: the first job claimed ahead starts in it on this
        very step (no claim's round trip, so a slot's next job starts as its last ends
        and the jobs' starts stay spread out), or the slot is free."""
        while (held := slots.hand_over()) is not None:
            running, claimed_at = held
            if running.lost:  # reclaimed while it waited: another worker may run it
                self._give_back(running, slots)
                continue
            running.started = time.monotonic()
            running.task = asyncio.create_task(
                self._attempt(running, slots, claimed_at, time.time())  # its run starts now
            )
            return

    def _release_held(self, slots: _Slots) -> None:
        """Stopping: the jobs claimed ahead go back to their queue at once, not run."""
        for running, _ in slots.release_held():
            self._give_back(running, slots)

    def _give_back(self, running: Running, slots: _Slots) -> None:
        """Put a job that never started back in its queue; the attempt does not count.
        Its lease was renewed while it waited (it is in ``_running``) until now."""
        assert self._finisher is not None
        lease = running.lease
        running.finishing = True
        slots.used -= 1
        slots.finishing += 1
        written = self._finisher.submit(lease, self._runner.interrupted(running.ctx))
        written.add_done_callback(lambda _: self._given_back(slots))
        self._tally.finished(lease.queue, lease.task, 0.0, None)  # its held lease
        if self._running.get(lease.job_id) is running:
            del self._running[lease.job_id]
        slots.freed.set()
        if not self._running:
            self._busy_changed.set()

    @staticmethod
    def _given_back(slots: _Slots) -> None:
        slots.finishing -= 1
        slots.freed.set()

    async def _trace(self, lease: Lease, claimed_at: int) -> tracing.Attempt | None:
        """The attempt's spans; a failure to read its trace context never fails the job."""
        assert self._tracing is not None
        try:
            return await self._tracing.attempt(self.client, lease, claimed_at)
        except Exception:
            log.exception("job %s: could not start its trace spans", lease.job_id)
            return None

    @staticmethod
    def _dropped(lease: Lease, outcome: Outcome) -> None:
        log.warning(
            "job %s: outcome %r dropped, this worker no longer holds its lease",
            lease.job_id,
            outcome.kind,
        )

    # -- side tasks --------------------------------------------------------------------
    def live_jobs(self) -> list[Running]:
        return [r for r in self._running.values() if not (r.lost or r.finishing)]

    async def _renew_loop(self) -> None:
        backend = self.client.backend
        while True:
            # A third of the shortest lease, so two renewals can fail before one expires.
            live = self.live_jobs()
            self._renew_period = self.renew_period([r.lease.lease for r in live] or [self.lease])
            self._renew_wake.clear()
            try:
                async with asyncio.timeout(self._renew_period):
                    await self._renew_wake.wait()
                continue  # a shorter lease started: sleep again, for its period
            except TimeoutError:
                pass
            live = self.live_jobs()
            if not live:
                continue
            if self._renewer is not None and self._renewer.ready:
                continue  # the renewal thread renews leases and slots
            try:
                self.apply_renewal(live, await self.renew_leases(backend, live))
            except Exception:
                log.exception("lease renewal failed; retrying")
                continue

    async def renew_leases(self, backend: Backend, live: Sequence[Running]) -> RenewResult:
        """Renew the leases of ``live`` on ``backend``, then the limit slots of those still
        held: the one renewal path, on this loop or in the renewal thread."""
        result = await backend.renew([r.lease for r in live])
        slots = self._runner.slots
        held = [
            slot
            for r in live
            if r.lease.job_id not in result.lost and (slot := slots.get(r.lease.token))
        ]
        if held:
            for slot in await extend(backend, held):
                if slots.get(slot.owner) is slot:  # still running, not just released
                    log.warning(
                        "limit slot %s expired while its job ran: the limit may be "
                        "exceeded until that job ends",
                        slot.key,
                    )
        return result

    def _pulse(self) -> None:
        """Stamp the loop as alive, now and every PULSE seconds, for the renewal thread;
        and end the attempts past the job_timeout setting."""
        self.pulse_at = now = time.monotonic()
        if self._running and self._job_timeout is not None:
            self._end_overdue(now, self._job_timeout)
        assert self._loop is not None
        self._pulse_timer = self._loop.call_later(PULSE, self._pulse)

    def _end_overdue(self, now: float, limit: float) -> None:
        """Cancel the attempts of tasks with no timeout of their own that have run past
        ``limit``: one scan per pulse, because a timer per job costs a no-op job more than
        the rest of its time on the loop. The runner turns the cancel into a timeout."""
        for running in self._running.values():
            if (
                now - running.started >= limit
                and running.lease.timeout is None
                and not running.finishing
                and not running.ctx.timed_out
                and running.task is not None
            ):
                running.ctx.timed_out = True
                running.task.cancel()

    def blocker(self, live: Sequence[Running]) -> str:
        """The job whose handler holds the loop, or every candidate when none is seen."""
        assert self._loop is not None
        current = asyncio.current_task(self._loop)
        named = [r for r in live if current is not None and r.task is current] or live
        jobs = ", ".join(f"{r.lease.job_id} (task {r.lease.task!r})" for r in named)
        return f"job {jobs}" if len(named) == 1 else f"one of jobs {jobs}"

    def apply_renewal(self, live: Sequence[Running], result: RenewResult) -> None:
        """Mark the lost leases, and cancel the jobs the store asks to stop."""
        for running in live:
            job_id = running.lease.job_id
            if running.finishing:
                continue  # its outcome landed while the renew was in flight
            if job_id in result.lost:
                running.lost = True
                log.warning(
                    "job %s: lease lost (expired and reclaimed, or finished "
                    "elsewhere); its outcome will be dropped",
                    job_id,
                )
            elif job_id in result.cancel and not running.ctx.cancelled:
                running.ctx.cancelled = True
                if running.task is not None:
                    running.task.cancel()

    @staticmethod
    def renew_period(spans: Sequence[float]) -> float:
        """Seconds between renewals: a third of the shortest lease."""
        return max(0.05, min(spans) / 3)

    async def _maintenance_loop(self) -> None:
        backend = self.client.backend
        s = self.client.settings
        last_purge = 0.0
        last_sweep = time.monotonic()  # the first sweep one interval in: runs just started
        while True:
            try:
                reclaimed = await backend.reclaim_expired()
                if reclaimed:
                    log.warning("reclaimed %d job(s) with expired leases", len(reclaimed))
                    if self.client.bus.wants("job.stalled"):
                        for job_id in reclaimed:
                            self.client.bus.emit(events.stalled(job_id))
                if self._retention_due.is_set() or time.monotonic() - last_purge > 60:
                    self._retention_due.clear()
                    last_purge = time.monotonic()
                    await self._retention(
                        s.keep_completed, s.keep_completed_for, {JobState.COMPLETED}
                    )
                    await self._retention(
                        s.keep_failed, s.keep_failed_for, FINISHED_STATES - {JobState.COMPLETED}
                    )
                    if self.steps is not None:
                        removed, more = await self.steps.expire()
                        if removed:
                            log.info("retention removed %d ended flow run(s)", removed)
                        if more:  # a bounded batch each pass: the next one at once
                            self._retention_due.set()
                if self.steps is not None and time.monotonic() - last_sweep > s.flow_sweep_interval:
                    last_sweep = time.monotonic()
                    await self.steps.sweep()
            except Exception:
                log.exception("maintenance failed; will try again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.reclaim_interval):
                    await self._retention_due.wait()

    async def _retention(
        self, keep: int | None, keep_for: float | None, states: set[JobState] | frozenset[JobState]
    ) -> None:
        # Runs even when both settings are off: jobs with their own keep_for still expire.
        n = await self.client.backend.purge(
            states=states, older_than=keep_for, keep_last=keep, retention=True
        )
        if n:
            log.info("retention removed %d finished job(s)", n)

    async def _control_loop(self) -> None:
        """Follow ``pause_worker`` / ``resume_worker`` (a key in the store): every half
        second while paused, every heartbeat interval while running."""
        key = worker_control_key(self.id)
        while True:
            await asyncio.sleep(0.5 if self.paused else self.heartbeat_interval)
            try:
                asked = await self.client.backend.kv_get(key)
            except Exception:
                log.exception("reading this worker's pause/resume flag failed")
                continue
            if asked == "pause":
                self.pause()
            elif asked == "resume":
                self.resume()

    async def _heartbeat_loop(self) -> None:
        backend = self.client.backend
        info = WorkerInfo(
            self.id, socket.gethostname(), os.getpid(), dict(self.queues), self._started_at
        )
        info.tasks = sorted(self.client.registry.tasks)
        info.flows = [] if self.steps is None else sorted(self.steps.graph.flows)
        while True:
            info.active = len(self._running)
            info.processed = self.processed
            info.paused = self.paused
            try:
                await backend.beat(info, self.heartbeat_interval * 3)
            except Exception:
                log.exception("heartbeat failed")
            beat_at = time.monotonic()
            self._busy_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_interval):
                    await self._busy_changed.wait()
                # Say so soon (status would show jobs long finished as running), but at most
                # once a second, so a worker idling between every two jobs stays cheap; never
                # later than the interval, or a short one's beat (ttl 3 intervals) lapses.
                spacing = min(1.0, self.heartbeat_interval)
                await asyncio.sleep(max(0.0, spacing - (time.monotonic() - beat_at)))
