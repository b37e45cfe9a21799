"""What the worker asks of flows: set up a step's context, write what its completion
triggers no later than its outcome, and end runs that have nothing left to do.

A completed step's new jobs of plain steps go with its outcome, in the finish's store
call, where the store can (``Capabilities.finish_followups``); elsewhere, and for emits,
waits and joins, follow-ups are enqueued inside the step's attempt. Either way a worker
killed before the outcome is written only makes the step run again, and the follow-ups'
derived ids make that rerun enqueue nothing twice. Ending a run is checked after an
outcome is written (the last step to finish sees all the others finished) and by a sweep
that covers a killed checker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from workhorse import codec, events
from workhorse.backends import Claim
from workhorse.client import Client
from workhorse.errors import ConfigError, PayloadError, error_info
from workhorse.flows import keys, listing, records, retention
from workhorse.flows.context import FlowContext, State, StepMeta, step_of
from workhorse.flows.counting import Counts
from workhorse.flows.graph import STEP_PREFIX, FlowDef, Graph, Shape, Step, waits_for_signal
from workhorse.flows.publisher import Publisher
from workhorse.flows.records import RunRecord, RunState
from workhorse.flows.waiting import Waits
from workhorse.job import (
    LIVE_STATES,
    REENQUEUE_DELAY,
    Event,
    JobState,
    Lease,
    NewJob,
    Outcome,
    RunEnd,
)
from workhorse.task import Task

log = logging.getLogger("workhorse.flows")

# A step job indexed this long ago and missing from the store was removed by retention
# (a long run); a younger one may be an enqueue in flight, or one whose writer died and
# whose step runs again within its lease.
PURGED_AFTER = 3600.0


# The events that end a step job; a purged step's outcome is read from them.
DONE = "step.completed"
STEP_ENDS = frozenset((DONE, "step.failed", "step.cancelled"))


def _purged(marker: dict[str, Any], now: float) -> bool:
    at = marker.get("at")
    return isinstance(at, int | float) and now - at > PURGED_AFTER


# A run's count of live steps expires this long after its first step: a count started
# anew is lower than the truth, which only makes steps look at the run again.
COUNT_TTL = 7 * 86_400.0
# How long a step's start may wait for its outcome's finish to carry it: a step running
# longer has it sent apart (``Engine._send_late_starts``), within 1.5 times this.
START_HELD = 0.2
# Added to the count by a step's first emit, taken back at its end: while a step emits,
# the steps it started cannot bring the count to zero, with one add per step, not per emit.
RESERVED = 1 << 40
# How long an ended run's ender has to settle it (clear its state, remove its live entry,
# send its end event) before a sweep does all three for it: an ender killed in between
# would otherwise leave the run's end event unsent.
SETTLE_AFTER = 60.0
# ``hand_off``'s step result before a follow-up's task needs it decoded.
_UNREAD = object()
# At most this many emitted jobs per store call; an emit finding as many waiting for the
# writer waits for it, so a loop of emits holds a bounded batch.
EMITS_PER_WRITE = 500


class Engine:
    def __init__(self, client: Client, graph: Graph) -> None:
        self.client = client
        self.graph = graph
        self.waits = Waits(self)
        self._publisher: Publisher | None = None
        self._counts: Counts | None = None
        # A step's index marker up to its time, per (flow, step, generation): see ``marker``.
        self._markers: dict[tuple[str, str, int], str] = {}
        # Attempts running, oldest first, with their start (``time.monotonic``), whose held
        # start ``_send_late_starts`` has not sent yet.
        self._running: dict[FlowContext, float] = {}
        self._late: asyncio.Task[None] | None = None

    @property
    def publisher(self) -> Publisher:
        backend = self.client.backend
        if self._publisher is None or self._publisher.backend is not backend:
            self._publisher = Publisher(backend)
        return self._publisher

    @property
    def counts(self) -> Counts:
        """Counted runs' count updates at a step's end, shared by the steps ending at once."""
        backend = self.client.backend
        if self._counts is None or self._counts.backend is not backend:
            self._counts = Counts(backend)
        return self._counts

    # -- the worker's side ---------------------------------------------------------------
    async def lookup(self, lease: Lease) -> StepMeta | None:
        """The flow, run and step a job is, or None for a job that is no step of a run."""
        return await step_of(self.graph, self.client.backend, lease.task, lease.job_id)

    async def run(
        self, lease: Lease, ctx: Any, attempt: Callable[[], Awaitable[Outcome]]
    ) -> Outcome:
        """Run one attempt of a job; for a step, its context gets ``flow`` and ``state``,
        and a completed step's follow-ups are enqueued before the outcome is returned, or
        returned with it (``Outcome.followups``) for its finish to write."""
        steps = self.graph.tasks.get(lease.task)
        if not steps:  # a plain job: no coroutine of the look-up's
            return await attempt()
        # A task in one flow: the id tells the run (step_in's, inline: once per step); in
        # several, the store tells the flow.
        if len(steps) == 1:
            found = keys.run_of(lease.job_id)
            only = steps[0]
            meta = None if found is None else StepMeta(found[0], only.flow, only.name, found[1])
        else:
            meta = await self.lookup(lease)
        if meta is None:
            return await attempt()
        fc = FlowContext(self, meta, lease.job_id, lease.queue)
        ctx.flow = fc  # ctx.state is made from it at its first use (fc.make_state)
        flow = self.graph.flows.get(meta.flow)
        # ``hold`` of its start, inline (as of its completion below: twice per step).
        job_id, name, queue, tried = lease.job_id, meta.step, lease.queue, lease.attempts
        info = {"run": meta.run, "flow": meta.flow, "step": name, "attempt": tried}
        fc.held.append(Event("step.started", job_id, name, queue, info, time.time()))
        self._running[fc] = time.monotonic()
        if self._late is None or self._late.done():
            self._late = asyncio.create_task(self._send_late_starts(), name="workhorse-flow-starts")
        try:
            outcome = await attempt()
        except BaseException:
            self.flush(fc)  # no outcome to carry it: its start is logged as before
            if fc.writer is not None:  # what it emitted is written, as if each emit waited
                try:
                    await asyncio.shield(self.emits_written(fc))
                except Exception:
                    log.exception("job %s: its emitted steps were not enqueued", lease.job_id)
            raise
        finally:
            self._running.pop(fc, None)
        if fc.writer is not None:
            try:
                await self.emits_written(fc)
            except Exception as exc:
                log.exception("job %s: its emitted steps were not enqueued", lease.job_id)
                if outcome.kind == "completed":  # it runs again and emits them again
                    outcome = Outcome(
                        "retry",
                        error=error_info(exc),
                        delay=REENQUEUE_DELAY,
                        refund=True,
                        logs=outcome.logs,
                    )
        if outcome.kind == "completed":
            # Stored before the follow-ups exist (``fire`` waits for it, or they go with
            # the outcome, written after its events), so the run's events read in cause
            # order.
            info = {"run": meta.run, "flow": meta.flow, "step": name, "attempt": tried}
            fc.held.append(Event("step.completed", job_id, name, queue, info, time.time()))
            try:
                result = outcome.result
                caps = self.client.backend.capabilities
                step = None if flow is None else flow.steps.get(meta.step)
                if step is not None and step.after is not None:  # its completion fires later
                    await fc.noted()
                    given = codec.loads(lease.data)
                    data = None if result is None else codec.loads(result)
                    await self.waits.start_after(
                        meta.run, meta.gen, step, lease.job_id, given, data
                    )
                else:
                    if not self.hand_off(fc, flow, result, outcome, caps.finish_followups):
                        data = None if result is None else codec.loads(result)
                        await self.fire(
                            fc, STEP_PREFIX + meta.step, data, "done", with_outcome=True
                        )
                        if fc.deferred:
                            outcome.followups = [(claim, new) for claim, _, new in fc.deferred]
            except (PayloadError, ConfigError) as exc:
                # Its output is no valid input for a follow-up (or names no task): the same
                # every time it runs, so the step fails with the reason, not a loop of reruns.
                log.error("job %s (step %s of run %s): %s", lease.job_id, meta.step, meta.run, exc)
                error = error_info(exc)
                error["message"] = f"step {meta.step}'s follow-ups: {error['message']}"
                outcome = Outcome("failed", error=error, logs=outcome.logs)
            except Exception as exc:
                log.exception(
                    "job %s (step %s of run %s): follow-ups not enqueued; the step runs again",
                    lease.job_id,
                    meta.step,
                    meta.run,
                )
                outcome = Outcome(
                    "retry",
                    error=error_info(exc),
                    delay=REENQUEUE_DELAY,
                    refund=True,
                    logs=outcome.logs,
                )
            else:
                # settle_events's, with the store's capabilities read once per step
                if fc.held:
                    if caps.finish_events:
                        outcome.events, fc.held = fc.held, []
                    else:
                        self.flush(fc)
                outcome.after = fc.last
                if caps.finish_ends and flow is not None:
                    shape = flow.shape()
                    # No step can still be finishing (most flows), or none read so.
                    if shape.ends == name and (
                        (caps.finish_followups and not shape.late)
                        or await self.others_done(meta, shape) is True
                    ):
                        now = time.time()
                        due = retention.due(flow, "completed", self.client.settings, now)
                        outcome.end = run_end(meta, now, due)  # filed with it (retention.py)
                return outcome
        kind = events.outcome_type(outcome)
        if kind != "job.queued":  # put back unrun (shutdown): no step event
            extra: dict[str, Any] = {"attempt": lease.attempts}
            if outcome.error is not None:
                extra["error"] = outcome.error
            if outcome.kind == "retry":
                extra["delay"] = outcome.delay
            self.hold(
                fc,
                "step." + kind[4:],
                {"run": meta.run, "flow": meta.flow, "step": meta.step, **extra},
            )
        self.settle_events(fc, outcome)
        return outcome

    async def _send_late_starts(self) -> None:
        """While steps run: send the held start of each still running after START_HELD
        through the publisher, so hooks, a run's stream and the dashboard see a long step
        start within that time (a quick one's goes with its outcome). One task for all
        attempts, not a timer each: cancelled timers burden the loop's heap (profiles.md)."""
        running = self._running
        while running:
            await asyncio.sleep(START_HELD / 2)
            cutoff = time.monotonic() - START_HELD
            while running:
                fc, began = next(iter(running.items()))
                if began > cutoff:
                    break
                del running[fc]
                if fc.held:
                    self.flush(fc)

    def settle_events(self, fc: FlowContext, outcome: Outcome) -> None:
        """Give the outcome the step's events still held: written by its finish where the
        store can (``Capabilities.finish_events``), else published now. Whatever it
        published apart is stored before its outcome (``Outcome.after``: the worker's
        finisher waits for it, once per batch of outcomes): a worker killed in between
        reruns it."""
        if fc.held:
            if self.client.backend.capabilities.finish_events:
                outcome.events, fc.held = fc.held, []
            else:
                self.flush(fc)
        outcome.after = fc.last

    def finished(
        self, outcome: Outcome, ctx: Any, written: bool
    ) -> Coroutine[Any, Any, None] | None:
        """After a step's outcome is written, check whether it was the run's last, unless
        the step itself tells: a closed flow's last step ends the run once the steps that
        may still be finishing read completed (its finish did, where the store can: then
        only a marked live entry's cleanup is left); a step whose finish wrote its new
        jobs of plain steps leaves the check to them (they cannot finish before it); in a
        counted flow, a step checks only when the run's count of live steps, with its own
        end and the steps it started, is down to zero; otherwise a step whose follow-ups
        (or, in a closed flow, the join it fed) finished before its outcome was written
        checks. No run reads completed while one of its steps is live. ``written``: the
        store took the outcome (the check may then take it for the step's record, if
        retention removed that first). Returns what is left to await, or None when there
        is nothing (most steps: a coroutine less each)."""
        fc = getattr(ctx, "flow", None)
        if not isinstance(fc, FlowContext):
            return None
        end = outcome.end
        if end is not None and outcome.kind == "completed":  # its finish carried the end
            ended = outcome.ended
            # Refused (a rerun or the sweep ends the run), ended before, or ended with
            # its event: nothing left; a marked live entry leaves the cleanup to do.
            if ended is None or not ended[0] or ended[1]:
                return None
            return self._settle_end(fc.meta, end)
        flow = self.graph.flows.get(fc.meta.flow)
        try:
            shape = None if flow is None else flow.shape()
            if fc.deferred:
                self.written(fc, outcome, flow, shape)
        except Exception:  # the sweep checks the run again
            log.exception("run %s: could not check whether it ended", fc.meta.run)
            return None
        if (
            fc.handed
            and outcome.kind == "completed"
            and shape is not None
            and not shape.counted
            and shape.ends != fc.meta.step
        ):
            return None  # ``_finished``'s answer for a step that handed off
        return self._finished(fc, outcome, shape, written)

    async def _finished(
        self, fc: FlowContext, outcome: Outcome, shape: Shape | None, written: bool
    ) -> None:
        """``finished``'s part that may ask the store, after the follow-ups' answers."""
        meta = fc.meta
        own = (fc.job_id, outcome) if written else None
        try:
            if shape is not None and shape.counted:
                final = outcome.kind in ("completed", "failed", "cancelled")
                # The steps it started, less its reservation and (ended) itself.
                delta = fc.claimed - (RESERVED if fc.reserved else 0) - final
                key = keys.count_key(meta.run, meta.gen)
                if not final:  # it runs again: what it started stays counted
                    if delta:
                        await self.counts.add(key, delta, COUNT_TTL)
                    return
                if outcome.kind == "completed" and fc.handed and delta == 0:
                    return  # its one follow-up took its place in the count
                live = await self.counts.add(key, delta, COUNT_TTL)
                if live > 0 and outcome.kind == "completed":
                    return
                await self.check(meta.run, meta, own)
                return
            if outcome.kind == "completed":
                last = None if shape is None else shape.ends
                if shape is not None and last == meta.step:
                    # No end went with its finish (the store's cannot carry one, or a step
                    # was still finishing): the steps' jobs are read now, after it.
                    await self.end_if_done(meta, shape, own)
                    return
                if fc.handed:
                    return
                if fc.followups:
                    jobs = await self.client.get_jobs(fc.followups)
                    if not any(j.finished for j in jobs.values()):
                        return  # the last of them to finish checks the run
                    if shape is not None and last is not None:
                        # They may have run to the last step's end: the run ends once that
                        # one and those still finishing read completed (a read, not a check).
                        await self.end_if_done(meta, shape, own)
                        return
                elif last is not None:
                    return  # an input of a join that is not complete: its last input starts it
            elif outcome.kind not in ("failed", "cancelled"):
                return
            await self.check(meta.run, meta, own)
        except Exception:  # the sweep checks the run again
            log.exception("run %s: could not check whether it ended", meta.run)

    async def _settle_end(self, meta: StepMeta, end: RunEnd) -> None:
        """``end_run``'s rest after a finish that ended the run but found its live entry
        marked (or gone): its state cleared as its cleanup rule says, then its event."""
        try:
            if await self.settled(meta.run, meta.flow, "completed"):
                await self.publisher.add(end.event)
        except Exception:  # a sweep settles the run and sends its event
            log.exception("run %s: could not settle its end", meta.run)

    def note(self, fc: FlowContext, type_: str, **data: Any) -> asyncio.Future[None]:
        """Add a step's event (emit, state) to the next batch of the log, after the events
        it holds; the step's outcome waits for it (``fc.noted()``)."""
        meta = fc.meta
        return self._noted(
            fc, type_, {"run": meta.run, "flow": meta.flow, "step": meta.step, **data}
        )

    def hold(self, fc: FlowContext, type_: str, data: dict[str, Any]) -> None:
        """Keep a step's own event (step.started, its end) on its context, timed now: its
        finish writes it with the outcome (``settle_events``), so it costs no publish of
        its own, unless the step publishes or waits for its events first (``flush``)."""
        fc.held.append(Event(type_, fc.job_id, fc.meta.step, fc.queue, data, time.time()))

    def flush(self, fc: FlowContext) -> None:
        """Send the step's held events to the publisher, ahead of what it does next."""
        held, fc.held = fc.held, []
        for event in held:
            fc.last = self.publisher.add(event)

    def _noted(self, fc: FlowContext, type_: str, data: dict[str, Any]) -> asyncio.Future[None]:
        if fc.held:
            self.flush(fc)
        event = Event(type_, fc.job_id, fc.meta.step, fc.queue, data, time.time())
        fc.last = self.publisher.add(event)
        return fc.last

    # -- triggers --------------------------------------------------------------------------
    def hand_off(
        self,
        fc: FlowContext,
        flow: FlowDef | None,
        result: bytes | None,
        outcome: Outcome,
        with_finish: bool,
    ) -> bool:
        """``fire`` of a step's completion (its encoded ``result``) for the common case,
        without a coroutine: its subscribers are all plain steps that wait for nothing
        (or there are none), and the outcome's finish writes their jobs
        (``outcome.followups``; ``fc.deferred`` for ``written``). False: ``fire`` must
        do it. ``with_finish``: the store's finish writes follow-ups
        (``Capabilities.finish_followups``)."""
        if flow is None:
            return False
        shape = flow.shape()
        meta = fc.meta
        subs = shape.handoff.get(meta.step)
        if subs is None:  # nothing subscribed, or a subscriber that joins or waits
            return STEP_PREFIX + meta.step not in shape.subscribed
        if self.client.instruments or not with_finish:
            return False
        for step in subs:
            if step.wait is not None:  # a delay or a cron time: ``due`` asks the store
                return False
        run, gen, job_id = meta.run, meta.gen, fc.job_id
        cause = (job_id, STEP_PREFIX + meta.step, "done")
        end = keys.end_key(run, gen)
        raw = b"null" if result is None else result
        data: Any = _UNREAD  # decoded for the first follow-up whose task converts it
        batch = []
        followups = []
        client = self.client
        tasks = client.registry.tasks
        timeout = flow.step_timeout
        # build_step's, inline (once per step): no options but the flow's step timeout; the
        # payload is the result's bytes where the task's input keeps them (Task.prepare_encoded).
        for step in subs:
            step_id = keys.step_job_id(run, gen, step.name, *cause)
            fc.followups.append(step_id)
            task = tasks.get(step.name) or client.registry.get_task(step.name)
            if data is _UNREAD and task.converts:
                data = codec.loads(raw)
            # step > flow > job, as build_step lays the flow's step timeout
            late = timeout is not None and task.defaults.timeout is None
            new = client.step_job(task, raw, data, timeout if late else None, step_id)
            claim = Claim(keys.job_key(run, step_id), self.marker(step, gen), end)
            batch.append((claim, task, new))
            followups.append((claim, new))
        fc.deferred = batch  # ``written`` takes their answers after the finish
        outcome.followups = followups
        return True

    async def fire(
        self,
        fc: FlowContext,
        trigger: str,
        data: Any,
        occurrence: str,
        with_outcome: bool = False,
    ) -> None:
        """Start the steps of the run's flow subscribed to ``trigger``. ``with_outcome``:
        the step's completion, whose new jobs of plain steps its finish may write
        (``fc.deferred``, taken by ``written`` after it) where the store can."""
        meta = fc.meta
        flow = self.graph.flow(meta.flow)
        shape = flow.shape()
        subs = shape.subscribed.get(trigger, ())
        if not subs:
            return
        backend = self.client.backend
        end = keys.end_key(meta.run, meta.gen)
        # A plain step's index entry is refused once the run ended (cancelled, failed), in
        # the same call; a wait is armed by other writes, so its run is asked first.
        if trigger in shape.signalled and await backend.kv_get(end) is not None:
            return
        if flow.counted() and occurrence != "done" and not fc.reserved:
            # Reserved before the steps it starts exist; taken back at its end.
            await self.counts.add(keys.count_key(meta.run, meta.gen), RESERVED, COUNT_TTL)
            fc.reserved = True
        fresh = True
        claims = 0  # step jobs this call claimed (a counted flow counts them live)
        batch: list[tuple[Claim, Task[Any, Any], NewJob]] = []  # one round trip for all
        for step in subs:
            if step.join:
                prefix = keys.input_prefix(meta.run, meta.gen, step.name)
                await backend.set_if_absent(
                    prefix + trigger, codec.dumps(data).decode(), unless=end
                )
                got = await backend.kv_scan(prefix)
                inputs = {k[len(prefix) :]: codec.loads(v) for k, v in got.items()}
                fresh = False
                if set(step.subscribes) <= set(inputs):
                    # Every input's writer may get here; the derived id starts the join once.
                    joined = {t: inputs[t] for t in step.subscribes}
                    await fc.noted()  # the step's events before the join exists
                    claims += await self.begin(meta.run, meta.gen, step, joined, "join")
                    fc.followups.append(keys.step_job_id(meta.run, meta.gen, step.name, "join"))
                elif shape.ends is not None:
                    # Another input starts it, maybe before this step's outcome is written:
                    # then the run's last step may end before this one, which reads the
                    # join after its finish (``_finished``) to end the run in its place.
                    fc.followups.append(keys.step_job_id(meta.run, meta.gen, step.name, "join"))
                continue
            cause = (fc.job_id, trigger, occurrence)
            job_id = keys.step_job_id(meta.run, meta.gen, step.name, *cause)
            fc.followups.append(job_id)
            options = None
            if step.wait is not None:
                if waits_for_signal(step):
                    await fc.noted()  # a signal stored before may start the step at once
                    fresh = await self.waits.start(meta.run, meta.gen, step, data, cause) and fresh
                    continue
                options = await self.due(step)
            batch.append(self.build_step(meta.run, meta.gen, step, data, cause, options, job_id))
        won: list[bool] = []
        if batch:
            if with_outcome and backend.capabilities.finish_followups:
                # Written by the finish, with the outcome, after the step's events
                # (``Outcome.after``); ``written`` takes the answers (a counted flow adds
                # what they claimed to its count after that too).
                if self.client.instruments:
                    await self.client.prepare_claimed(batch)
                fc.deferred, fc.fresh = batch, fresh
                self.fired(fc, flow, claims, [])  # the joins it claimed
                return
            if occurrence != "done":  # an emit: written with the others made until a wait
                self.defer(fc, batch)
                if len(fc.emitted) >= EMITS_PER_WRITE:
                    await self.emits_written(fc)
            else:
                await fc.noted()  # the step's events (its completion) before its follow-ups
                won = [c for c, _ in await self.client.submit_claimed(batch)]
        self.fired(fc, flow, claims, won)

    def defer(self, fc: FlowContext, batch: list[tuple[Claim, Task[Any, Any], NewJob]]) -> None:
        """Keep an emit's new jobs of plain steps for the attempt's writer: started by the
        first, it writes all that the handler emits until it next waits in one store call
        (a loop of emits is one round trip, not one each)."""
        fc.emitted.extend(batch)
        writer = fc.writer
        # A writer that failed stays, for the attempt's end to hear: the step runs again.
        if writer is None or (writer.done() and not writer.cancelled() and not writer.exception()):
            fc.writer = asyncio.create_task(self._write_emitted(fc), name="workhorse-flow-emits")

    async def _write_emitted(self, fc: FlowContext) -> None:
        flow = self.graph.flow(fc.meta.flow)
        while fc.emitted:
            batch, fc.emitted = fc.emitted[:EMITS_PER_WRITE], fc.emitted[EMITS_PER_WRITE:]
            await fc.noted()  # the emits' events before their jobs
            won = [c for c, _ in await self.client.submit_claimed(batch)]
            self.fired(fc, flow, 0, won)

    async def emits_written(self, fc: FlowContext) -> None:
        """Wait until the attempt's emits are written; raises what writing them raised."""
        while fc.writer is not None:
            writer = fc.writer
            try:
                await writer
            finally:
                if fc.writer is writer:
                    fc.writer = None

    def fired(
        self,
        fc: FlowContext,
        flow: FlowDef,
        claims: int,
        won: list[bool],
        shape: Shape | None = None,
    ) -> None:
        """Take the answers of a fire's new jobs of plain steps, whether each claimed its
        step (``claims``: the step jobs it claimed so far; ``shape``: the flow's, when the
        caller has it). Written inside the attempt, they may finish before the step's
        outcome is written: it is not ``handed`` (see ``written``), and checks the run
        after its finish when they did."""
        claims += sum(won)
        if shape is None:
            shape = flow.shape()
        if claims and shape.counted:
            fc.claimed += claims  # added with the step's own end (``finished``)

    def written(
        self, fc: FlowContext, outcome: Outcome, flow: FlowDef | None, shape: Shape | None = None
    ) -> None:
        """After the finish of a step whose follow-ups went with its outcome: their
        answers, as ``fire`` takes them. None written (its lease was lost, or the store
        rejected them and the step runs again) is taken as nothing new."""
        batch, fc.deferred = fc.deferred, ()
        results = outcome.followups_claimed if outcome.kind == "completed" else None
        claims = 0
        fresh = fc.fresh
        if results is not None:
            self.client.claimed_written(batch, results)
            for claimed, _ in results:
                if claimed:
                    claims += 1
                else:
                    fresh = False
        elif batch:
            fresh = False
        # fired's, inline (once per step), for a completion that claimed no join itself.
        if shape is None:
            shape = (flow or self.graph.flow(fc.meta.flow)).shape()
        if claims and shape.counted:
            fc.claimed += claims  # added with the step's own end (``finished``)
        fc.handed = fresh and fc.meta.step in shape.handoff

    async def release(self, record: dict[str, Any], data: Any) -> None:
        """Fire the completion of the step whose wait after it (``record``) is over, as
        its own attempt would have: the same ids, so a release run again starts nothing
        twice."""
        meta = StepMeta(record["run"], record["flow"], record["step"], record["gen"])
        await self.fire(
            FlowContext(self, meta, record["of"]), STEP_PREFIX + meta.step, data, "done"
        )

    async def begin(self, run: str, gen: int, step: Step, data: Any, *cause: str) -> bool:
        """Start the step for this cause: at once, after its wait's delay or cron time, or
        once its signal arrives. True when this call wrote the step's job (or its wait)."""
        if waits_for_signal(step):
            return await self.waits.start(run, gen, step, data, cause)
        return await self.enqueue_step(run, gen, step, data, *cause, options=await self.due(step))

    async def due(self, step: Step, now: float | None = None) -> dict[str, Any] | None:
        """The enqueue options of a step that waits for a delay or a cron time; ``now``:
        the store's time when the caller has just read it."""
        w = step.wait
        if w is None:
            return None
        if w.delay is not None:
            return {"delay": w.delay}
        assert w.cron is not None
        if now is None:
            now = await self.client.backend.now()
        return {"at": w.cron.next_after(datetime.fromtimestamp(now, UTC))}

    async def enqueue_step(
        self,
        run: str,
        gen: int,
        step: Step,
        data: Any,
        *cause: str,
        options: dict[str, Any] | None = None,
    ) -> bool:
        """Enqueue the step's job for this cause, unless it exists already; True when this
        call claimed it."""
        item = self.build_step(run, gen, step, data, cause, options)
        ((claimed, _),) = await self.client.submit_claimed([item])
        return claimed

    def build_step(
        self,
        run: str,
        gen: int,
        step: Step,
        data: Any,
        cause: tuple[str, ...],
        options: dict[str, Any] | None = None,
        job_id: str | None = None,
        flow: FlowDef | None = None,
        end: str | None = None,
    ) -> tuple[Claim, Task[Any, Any], NewJob]:
        """The step's job for this cause, with its claim: the run's index entry, written
        with the job and refused with it once the run ended (a run with an entry is not
        over). A claim already there (this same cause run again, or a writer killed
        before its enqueue) still writes a missing job of a live run. ``job_id``: its id
        for this cause, ``flow`` the step's flow and ``end`` the run's end key, when the
        caller has them (once per follow-up: each look-up saved counts)."""
        if job_id is None:
            job_id = keys.step_job_id(run, gen, step.name, *cause)
        registry = self.client.registry
        task = registry.tasks.get(step.name) or registry.get_task(step.name)
        if flow is None:
            flow = self.graph.flows.get(step.flow)
        if flow is not None and flow.step_timeout is not None and task.defaults.timeout is None:
            options = {**(options or {}), "timeout": flow.step_timeout}  # step > flow > job
        new = self.client.new_job(task, data, options or {}, job_id)
        # Its id, derived from the cause, already makes it one job (every store keeps the
        # stored job for an id it holds); a dedup key only cost index entries per step, and
        # a task's own singleton key does not apply to its steps (docs/decisions.md).
        new.dedup_key, new.replace = None, False
        claim = Claim(
            keys.job_key(run, job_id), self.marker(step, gen), end or keys.end_key(run, gen)
        )
        return claim, task, new

    def marker(self, step: Step, gen: int) -> str:
        """A step job's entry in its run's index: its flow, step, generation and the time
        it was written (``_purged``), as JSON; the part before the time is made once."""
        prefix = self._markers.get((step.flow, step.name, gen))
        if prefix is None:
            whole = codec.dumps({"flow": step.flow, "step": step.name, "gen": gen, "at": 0})
            prefix = self._markers[step.flow, step.name, gen] = whole.decode()[: -len("0}")]
        # Seconds with six decimals from integers: a float's repr (shortest round trip)
        # costs three times as many instructions, and only ``_purged`` reads the time.
        seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
        return f"{prefix}{seconds}.{micros:06d}}}"

    # -- ending runs -----------------------------------------------------------------------
    async def check(
        self, run: str, known: StepMeta | None = None, own: tuple[str, Outcome] | None = None
    ) -> RunState | None:
        """End the run if it is over: completed when no step is left to run, failed when a
        step failed for good and its flow does not continue. Returns the state it ended in.
        ``known``: a step of the run that just finished (its flow and generation need no
        read; ending it is claimed once, by the end marker); ``own``: that step's job id
        and its outcome as the store took it, which stands for its record if retention
        removed the record before this read."""
        backend = self.client.backend
        if known is None:
            rec = await records.load(backend, run)
            if rec is None or rec.state != "running":
                return None
            name, gen = rec.flow, rec.gen
        else:
            name, gen = known.flow, known.gen
        flow = self.graph.flows.get(name)
        index = await backend.kv_scan(keys.job_prefix(run))
        ids = [k[len(keys.job_prefix(run)) :] for k in index]
        markers = {i: codec.loads(raw) for i, raw in zip(ids, index.values(), strict=True)}
        jobs = await self.client.get_jobs(ids)
        now = time.time()
        # A short keep_failed_for (or keep_completed_for) may purge the step's record
        # between its finish and this read: its outcome, not an hour's wait, tells then.
        gone = own if own is not None and own[0] in markers and own[0] not in jobs else None
        # Without its own worker's outcome (it died before its check), a purged step's end
        # is read from the run's event log: one read, only when a record is missing.
        ended: dict[str, Event] = {}
        if len(jobs) < len(markers):
            missing = [i for i in markers if i not in jobs and (gone is None or i != gone[0])]
            if missing:
                ended = await self.logged_ends(run, missing)
        # A step whose outcome is not written is pending even when its follow-ups ran:
        # a run reads completed only once each of its steps reads ended.
        pending: list[str | None] = [
            i
            for i, marker in markers.items()
            if (
                jobs[i].state in LIVE_STATES
                if i in jobs
                else not (_purged(marker, now) or i in ended or (gone is not None and i == gone[0]))
            )
        ]
        if flow is None or flow.shape().waits:
            waiting = await backend.kv_scan(keys.waiting_prefix(run))
            if any(k[len(keys.waiting_prefix(run)) :] not in markers for k in waiting):
                pending.append(None)  # a step waits for its signal (not yet in the index)
        failed = [
            (j.task, j.id, j.error)
            for j in jobs.values()
            if j.state in (JobState.FAILED, JobState.CANCELLED)
        ]
        if gone is not None and known is not None and gone[1].kind in ("failed", "cancelled"):
            failed.append((known.step, gone[0], gone[1].error))
        if ended:
            failed += [
                (str(e.data.get("step")), i, e.data.get("error"))
                for i, e in ended.items()
                if e.type != DONE
            ]
        if failed and (flow is None or flow.on_failure == "fail"):
            task, job_id, why = failed[0]
            error = {"step": task, "job_id": job_id, **(why or {})}
            if await self.end_run(run, name, gen, "failed", error):
                await self.cancel_jobs(run, gen)
            return "failed"
        if not pending:
            # The jobs were read after the index: a step whose finish came between reads
            # as done, while the follow-ups that finish wrote with it are not in ``index``.
            if (await backend.kv_scan(keys.job_prefix(run))).keys() != index.keys():
                return None  # those follow-ups check the run when they end
            await self.end_run(run, name, gen, "completed", None)
            return "completed"
        return None

    async def logged_ends(self, run: str, ids: list[str]) -> dict[str, Event]:
        """The latest end event (completed, failed or cancelled) in the run's event log of
        each step job of ``ids``. A step's event the log's cap trimmed is not found."""
        wanted = set(ids)
        ends: dict[str, Event] = {}
        cursor = 0
        while batch := await self.client.backend.run_events(run, cursor, 1000):
            cursor = batch[-1].id
            for e in batch:
                if e.type in STEP_ENDS and e.job_id is not None and e.job_id in wanted:
                    ends[e.job_id] = e  # a resumed step's later end overrides its failure
            if len(batch) < 1000:
                break
        return ends

    async def end_if_done(
        self, meta: StepMeta, shape: Shape, own: tuple[str, Outcome] | None
    ) -> None:
        """End a closed flow's run completed when ``others_done`` reads so; check it when
        one of them failed, was cancelled or is gone. When one is live, the last step, or
        the one still finishing, ends it after its own finish."""
        done = await self.others_done(meta, shape)
        if done is True:
            await self.end_run(meta.run, meta.flow, meta.gen, "completed", None)
        elif done is None:
            await self.check(meta.run, meta, own)

    async def others_done(self, meta: StepMeta, shape: Shape) -> bool | None:
        """Whether a closed flow's run can end as its step ``meta`` finished: its last step
        and those that may still be finishing (``Shape.late``, or every step where the
        store's finish cannot write follow-ups) read completed, ``meta``'s own aside, in
        one read (none in most flows, for the last step). False: one is live or the last
        one is not there yet (it, or the live one, ends the run after its finish); None:
        one failed or was cancelled (or the read failed): ``check`` tells."""
        names = shape.late if self.client.backend.capabilities.finish_followups else None
        last = shape.ends
        if names is not None and not names and meta.step == last:
            return True
        ids = closed_ids(shape, meta.run, meta.gen)
        wanted = [
            i
            for n, i in ids.items()
            if n != meta.step and (names is None or n in names or n == last)
        ]
        if not wanted:
            return True
        try:
            jobs = await self.client.get_jobs(wanted)
        except Exception:
            log.exception("run %s: could not read its steps", meta.run)
            return None
        if any(j.state in LIVE_STATES for j in jobs.values()):
            return False
        if last != meta.step and ids.get(last or "") not in jobs:
            return False
        # One missing ran before the last step did: retention removed it once it finished.
        if all(j.state == JobState.COMPLETED for j in jobs.values()):
            return True
        return None

    async def end(self, rec: RunRecord, state: RunState, error: dict[str, Any] | None) -> bool:
        """End the run's generation in ``state``, once: False when it had ended already."""
        if not await self.end_run(rec.id, rec.flow, rec.gen, state, error):
            return False
        rec.state = state
        rec.ended_at = time.time()
        rec.error = error
        return True

    async def end_run(
        self, run: str, name: str, gen: int, state: RunState, error: dict[str, Any] | None
    ) -> bool:
        """End the run's generation: its end marker holds the end (the record is read
        with it), claimed once. False when it had ended already."""
        backend = self.client.backend
        now = time.time()
        due = retention.due(self.graph.flows.get(name), state, self.client.settings, now)
        mark = records.end_mark(state, now, error, due)
        if due is not None:  # filed before its end is written (retention.py)
            await backend.kv_set(keys.expiry_key(due, run, gen), mark)
        if not await backend.set_if_absent(keys.end_key(run, gen), mark):
            if due is not None:  # ended before: this filing is void
                await backend.kv_delete(keys.expiry_key(due, run, gen), mark)
            return False
        # ``settle``'s, inline; its event is sent by whoever removes the live entry (a
        # sweep that took over from a slow ender, or this call).
        if await backend.kv_delete(keys.live_key(run), name) or await self.settled(
            run, name, state
        ):
            await self.publish(f"flow.{state}", run, name, error=error)
        return True

    async def settle(self, run: str, name: str, state: RunState) -> bool:
        """After a run's end: remove its live entry, and its state as its flow's cleanup
        rule says. The entry holds the flow's name, marked once a step kept state:
        deleting it with the unmarked name tells whether there is state to clear; a
        marked one goes after the state, so a live entry left means a cleanup not done.
        True when this call removed the entry: its caller sends the run's end event."""
        if await self.client.backend.kv_delete(keys.live_key(run), name):
            return True
        return await self.settled(run, name, state)

    async def settled(self, run: str, name: str, state: RunState) -> bool:
        """``settle`` of a run whose live entry is marked (or gone): its state is cleared
        as its flow's cleanup rule says, then the entry is removed. True when this call
        removed it."""
        backend = self.client.backend
        flow = self.graph.flows.get(name)
        if flow is not None and (
            flow.cleanup == "immediate" or (flow.cleanup == "on_complete" and state == "completed")
        ):
            # Gone: settled already, its state cleared first (a sweep's scan is older than
            # the runs that ended while it worked): one read, not a scan of the state.
            if await backend.kv_get(keys.live_key(run)) is None:
                return False
            await State(self.client, run, flow).clear()
        return await backend.kv_delete(keys.live_key(run))

    # -- starting and stopping runs ---------------------------------------------------------
    async def start_run(self, flow: str, data: Any = None, parent: str | None = None) -> str:
        """Start a run: its record, its live entry, ``flow.started``, its count of live
        steps (a counted flow) and its entry steps' jobs go in one store call
        (``Backend.enqueue_claimed_with``) after the clock's read; a flow with an entry
        waiting for a signal writes them one by one. ``parent``: the run whose step
        starts it, which lists it among its children in the same call."""
        f = self.graph.flow(flow)
        f.check()
        f.shape()  # a flow that cannot be shaped fails here, not in a worker
        rec = RunRecord(keys.new_run_id(), flow, data, await self.client.backend.now())
        rec.parent = parent
        await self.write_start(rec, f, flow)
        return rec.id

    async def write_start(self, rec: RunRecord, flow: FlowDef, live: str, **data: Any) -> None:
        """Write a run's generation (a start's or a restart's): its record, its live entry
        holding ``live``, ``flow.started`` with ``data``, its count of live steps (a
        counted flow), its keys in the index of runs and its entry steps' jobs, in one
        store call (``Backend.enqueue_claimed_with``); a flow with an entry waiting for a
        signal writes its entries apart, after the rest. ``rec.created_at`` is the store's
        time just read."""
        backend = self.client.backend
        entries = flow.entries()
        # The run's record, its live entry, its keys in the index of runs (listing) and,
        # for a run a step started, its place among its parent's children.
        written = dict((records.entry(rec), (keys.live_key(rec.id), live)))
        written.update(listing.entries(rec))
        if rec.parent is not None:
            written[keys.child_prefix(rec.parent) + rec.id] = rec.flow
        started = run_event("flow.started", rec.id, rec.flow, **data)
        if not entries or any(waits_for_signal(step) for step in entries):  # none counted
            await backend.enqueue_claimed_with([], written, [started])
            await self.start_entries(rec, flow)
            return
        cause = ("entry",)
        items = [
            self.build_step(
                rec.id, rec.gen, step, rec.input, cause, await self.due(step, rec.created_at),
                flow=flow,
            )
            for step in entries
        ]  # fmt: skip
        # Counted with the entries' writes, so none ends uncounted.
        count = keys.count_key(rec.id, rec.gen)
        counted = [(count, len(items), COUNT_TTL)] if flow.counted() else []
        await self.client.submit_claimed(items, written, [started], counted)

    async def start_entries(self, rec: RunRecord, flow: FlowDef) -> None:
        entries = flow.entries()
        if flow.counted():  # counted before they exist, so none ends uncounted
            await self.client.backend.counter_add(
                keys.count_key(rec.id, rec.gen), len(entries), COUNT_TTL
            )
        for step in entries:
            await self.begin(rec.id, rec.gen, step, rec.input, "entry")

    async def cancel_run(self, run: str) -> bool:
        """Cancel a running run: its queued and running steps are cancelled. The runs its
        steps started are cancelled too, and theirs, even when this one had ended. False
        when the run had ended already."""
        rec = await records.load(self.client.backend, run)
        if rec is None:
            return False
        ended = False
        if rec.state == "running":
            ended = await self.end(rec, "cancelled", None)
            await self.cancel_jobs(run, rec.gen)
        await self.cancel_children(run)
        return ended

    async def cancel_children(self, run: str) -> None:
        """Cancel the runs the run's steps started (``cancel_run``: and theirs)."""
        prefix = keys.child_prefix(run)
        for key in await self.client.backend.kv_scan(prefix):
            await self.cancel_run(key[len(prefix) :])

    async def cancel_jobs(self, run: str, upto: int) -> None:
        """Cancel the run's live steps and drop its waits, of generation ``upto`` and
        before: a restart racing this call writes a later one, which stays whole."""
        prefix = keys.job_prefix(run)
        ids = [k[len(prefix) :] for k in await self.client.backend.kv_scan(prefix)]
        ids = [i for i in ids if (keys.run_of(i) or (run, 0))[1] <= upto]
        for job in (await self.client.get_jobs(ids)).values():
            if job.state in LIVE_STATES:
                await self.client.cancel(job.id)
        await self.waits.drop(run, upto)

    async def sweep(self) -> int:
        """Check every running run: ends those whose last checker died, resolves waits
        whose signal is stored, marks stalls. Returns how many runs ended."""
        backend = self.client.backend
        ended = 0
        for key in await backend.kv_scan(keys.live_prefix()):
            rec = await records.load(backend, key[len(keys.live_prefix()) :])
            if rec is None:
                await backend.kv_delete(key)
                continue
            if rec.state != "running":
                # Its ender is settling it, or died before it was done: after SETTLE_AFTER
                # the sweep settles it, and sends its end event if it removed the entry.
                ended_at = rec.ended_at or 0.0
                if time.time() - ended_at >= SETTLE_AFTER and await self.settle(
                    rec.id, rec.flow, rec.state
                ):
                    await self.publish(f"flow.{rec.state}", rec.id, rec.flow, error=rec.error)
                continue
            await self.waits.rescue(rec.id)
            if await self.check(rec.id) is not None:
                ended += 1
            else:
                await self.stall_check(rec)
        return ended

    async def expire(self, limit: int = retention.BATCH) -> tuple[int, bool]:
        """One retention pass over the ended runs (``retention.expire``): how many it
        removed, and whether more may be due."""
        return await retention.expire(self.waits, limit)

    async def remove_run(self, run: str, end: tuple[int, str] | None = None) -> bool:
        """Remove an ended run's keys (``retention.remove_run``)."""
        return await retention.remove_run(self.waits, run, end)

    # -- stalls ------------------------------------------------------------------------------
    async def last_progress(self, rec: RunRecord) -> float:
        """The store's time of the run's latest step start, finish, enqueue or wait."""
        prefix = keys.job_prefix(rec.id)
        ids = [k[len(prefix) :] for k in await self.client.backend.kv_scan(prefix)]
        times = [rec.created_at]
        for job in (await self.client.get_jobs(ids)).values():
            for t in (job.created_at, job.started_at, job.finished_at):
                if t is not None:
                    times.append(t.timestamp())
        times.extend(float(w["since"]) for w in await self.waits.pending(rec.id))
        return max(times)

    async def stall_check(self, rec: RunRecord) -> bool:
        """Mark a running run stalled when it made no progress for its flow's stall
        timeout, with one ``flow.stalled`` event per stall."""
        flow = self.graph.flows.get(rec.flow)
        if flow is None or flow.stall_timeout is None:
            return False
        now = await self.client.backend.now()
        last = await self.last_progress(rec)
        if rec.stalled_at is not None:
            if last > rec.stalled_at:  # it moved on by itself
                rec.stalled_at = None
                await records.save(self.client.backend, rec)
            return False
        if now - last < flow.stall_timeout or await self.waits.timed(rec.id):
            return False
        if not await self.client.backend.set_if_absent(keys.stall_key(rec.id, last), "1"):
            return False
        rec.stalled_at = now
        await records.save(self.client.backend, rec)
        await self.publish("flow.stalled", rec.id, rec.flow, idle=now - last)
        return True

    async def resume(self, rec: RunRecord) -> int:
        """Go on with a stalled, failed or cancelled run where it stopped: an ended run
        is reopened (its generation's end marker removed, its live entry written again),
        its failed and cancelled steps run again from their recorded input, what its
        completed steps and entries start is started where it is missing (their derived
        ids start nothing twice), and waits whose signal is stored are resolved. Completed
        steps do not run again. Returns how many steps were retried."""
        backend = self.client.backend
        flow = self.graph.flow(rec.flow)
        reopened = rec.state if rec.state != "running" else None
        live = rec.flow + keys.STATEFUL  # marked: its end looks for state to clear
        if reopened is not None:
            # The marker goes first: a resume killed between the two leaves a run that
            # reads running without its live entry, which resuming it again writes.
            await backend.kv_delete(keys.end_key(rec.id, rec.gen))
            await backend.kv_set(keys.live_key(rec.id), live)
        elif await backend.set_if_absent(keys.live_key(rec.id), live) and (
            await backend.kv_get(keys.end_key(rec.id, rec.gen)) is not None
        ):
            await backend.kv_delete(keys.live_key(rec.id), live)  # it ended meanwhile
        prefix = keys.job_prefix(rec.id)
        index = await backend.kv_scan(prefix)
        jobs = await self.client.get_jobs([k[len(prefix) :] for k in index])
        stopped = [j for j in jobs.values() if j.state in (JobState.FAILED, JobState.CANCELLED)]
        rec.state, rec.ended_at, rec.error, rec.stalled_at = "running", None, None, None
        await records.save(backend, rec)
        data: dict[str, Any] = {"retried": len(stopped)}
        if reopened is not None:
            data["reopened"] = reopened
        await self.publish("flow.resumed", rec.id, rec.flow, **data)  # before what it starts
        # A failed step's end took it out of its run's count; a cancelled one may still
        # be in it (cancelled while queued): counted again before they are live, the
        # failed only, as a count too low only makes steps look at the run, where one
        # too high leaves its end to the sweep.
        failed = sum(j.state is JobState.FAILED for j in stopped)
        if failed and flow.counted():
            await self.counts.add(keys.count_key(rec.id, rec.gen), failed, COUNT_TTL)
        retried = 0
        for job in stopped:
            if await self.client.retry(job.id):
                retried += 1
        if reopened is not None:
            # What the run's end refused to start: entries that wait, and the follow-ups
            # of steps that completed after it (the emits of those are not known).
            for step in flow.entries():
                await self.begin(rec.id, rec.gen, step, rec.input, "entry")
            for job in jobs.values():
                done = flow.steps.get(job.task)
                if job.state is not JobState.COMPLETED or done is None:
                    continue
                if done.after is not None:
                    await self.waits.start_after(
                        rec.id, rec.gen, done, job.id, job.data, job.result
                    )
                else:
                    meta = StepMeta(rec.id, rec.flow, done.name, rec.gen)
                    fc = FlowContext(self, meta, job.id)
                    await self.fire(fc, STEP_PREFIX + done.name, job.result, "done")
        await self.waits.rescue(rec.id)
        await self.check(rec.id)  # nothing left to run: it ends now
        return retried

    def publish(self, type_: str, run: str, flow: str, **data: Any) -> asyncio.Future[None]:
        """Write a run's event (flow.*, step.waiting, step.resumed), in the next batch;
        the future settles once it is stored (a future, not a coroutine: once per run)."""
        return self.publisher.add(run_event(type_, run, flow, **data))


def run_event(type_: str, run: str, flow: str, **data: Any) -> Event:
    """A run's event (not yet stored), at this process's time."""
    return Event(type_, None, None, None, {"run": run, "flow": flow, **data}, time.time())


def run_end(meta: StepMeta, now: float, due: float | None) -> RunEnd:
    """The completed end of the step's run at ``now``, for its finish to write
    (``Outcome.end``), with its retention entry when retention removes it (at ``due``)."""
    run, name, gen = meta.run, meta.flow, meta.gen
    event = Event("flow.completed", None, None, None, {"run": run, "flow": name}, now)
    mark = records.end_mark("completed", now, None, due)
    entry = None if due is None else keys.expiry_key(due, run, gen)
    return RunEnd(keys.end_key(run, gen), mark, keys.live_key(run), name, event, entry)


def closed_ids(shape: Shape, run: str, gen: int) -> dict[str, str]:
    """Each step's job id in a run of a closed flow (``Shape.order``), by step: each runs
    once, for the one cause its place in the flow gives (``fire``, ``begin``)."""
    ids: dict[str, str] = {}
    for step in shape.order:
        if step.entry:
            cause: tuple[str, ...] = ("entry",)
        elif step.join:
            cause = ("join",)
        else:
            trigger = step.subscribes[0]
            cause = (ids[trigger[len(STEP_PREFIX) :]], trigger, "done")
        ids[step.name] = keys.step_job_id(run, gen, step.name, *cause)
    return ids
