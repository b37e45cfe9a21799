"""What the worker asks of flows: set up a step's context, enqueue what its completion
triggers before its outcome is written, and end runs that have nothing left to do.

Follow-ups are enqueued inside the step's attempt, so a worker killed before the outcome
is written only makes the step run again, and the follow-ups' derived ids make that rerun
enqueue nothing twice. Ending a run is checked after an outcome is written (the last step
to finish sees all the others finished) and by a sweep that covers a killed checker."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from workhorse import codec
from workhorse.client import Client
from workhorse.errors import error_info
from workhorse.flows import keys, records
from workhorse.flows.context import FlowContext, State, StepMeta, step_of
from workhorse.flows.graph import STEP_PREFIX, FlowDef, Graph, Step
from workhorse.flows.records import RunRecord, RunState
from workhorse.flows.waiting import Waits
from workhorse.job import LIVE_STATES, Event, JobState, Lease, Outcome

log = logging.getLogger("workhorse.flows")

# A step job indexed this long ago and missing from the store was removed by retention
# (a long run); a younger one may be an enqueue in flight, or one whose writer died and
# whose step runs again within its lease.
PURGED_AFTER = 3600.0


def _purged(marker: str, now: float) -> bool:
    at = codec.loads(marker).get("at")
    return isinstance(at, int | float) and now - at > PURGED_AFTER


# A step whose follow-ups could not be written is tried again this soon, attempt refunded.
REENQUEUE_DELAY = 1.0


class Engine:
    def __init__(self, client: Client, graph: Graph) -> None:
        self.client = client
        self.graph = graph
        self.waits = Waits(self)

    # -- the worker's side ---------------------------------------------------------------
    async def lookup(self, lease: Lease) -> StepMeta | None:
        """The flow, run and step a job is, or None for a job that is no step of a run."""
        return await step_of(self.graph, self.client.backend, lease.task, lease.job_id)

    async def run(
        self, lease: Lease, ctx: Any, attempt: Callable[[], Awaitable[Outcome]]
    ) -> Outcome:
        """Run one attempt of a job; for a step, its context gets ``flow`` and ``state``,
        and a completed step's follow-ups are enqueued before the outcome is returned."""
        meta = await self.lookup(lease)
        if meta is None:
            return await attempt()
        fc = FlowContext(self, meta, lease.job_id)
        ctx.flow = fc
        ctx.state = State(self.client, meta.run, self.graph.flows.get(meta.flow))
        outcome = await attempt()
        if outcome.kind != "completed":
            return outcome
        try:
            data = None if outcome.result is None else codec.loads(outcome.result)
            step = self.graph.step(meta.flow, meta.step)
            if step is not None and step.after is not None:  # its completion fires later
                given = codec.loads(lease.data)
                await self.waits.start_after(meta.run, meta.gen, step, lease.job_id, given, data)
            else:
                await self.fire(fc, STEP_PREFIX + meta.step, data, "done")
        except Exception as exc:
            log.exception(
                "job %s (step %s of run %s): follow-ups not enqueued; the step runs again",
                lease.job_id,
                meta.step,
                meta.run,
            )
            return Outcome(
                "retry",
                error=error_info(exc),
                delay=REENQUEUE_DELAY,
                refund=True,
                logs=outcome.logs,
            )
        return outcome

    async def finished(self, outcome: Outcome, ctx: Any) -> None:
        """After a step's outcome is written: a step that led nowhere, or failed, may have
        been the run's last, so the run is checked; so is one whose follow-ups finished
        before its own outcome was written (their checks saw it still running)."""
        fc = getattr(ctx, "flow", None)
        if not isinstance(fc, FlowContext):
            return
        try:
            if outcome.kind == "completed" and fc.followups:
                jobs = await self.client.get_jobs(fc.followups)
                if not any(j.finished for j in jobs.values()):
                    return  # the last of them to finish checks the run
            elif outcome.kind not in ("completed", "failed", "cancelled"):
                return
            await self.check(fc.meta.run)
        except Exception:  # the sweep checks the run again
            log.exception("run %s: could not check whether it ended", fc.meta.run)

    # -- triggers --------------------------------------------------------------------------
    async def fire(self, fc: FlowContext, trigger: str, data: Any, occurrence: str) -> None:
        """Start the steps of the run's flow subscribed to ``trigger``."""
        meta = fc.meta
        flow = self.graph.flow(meta.flow)
        subs = flow.subscribers(trigger)
        if not subs:
            return
        backend = self.client.backend
        if await backend.kv_get(keys.end_key(meta.run, meta.gen)) is not None:
            return  # the run ended (cancelled, failed): start nothing more
        for step in subs:
            if step.join:
                prefix = keys.input_prefix(meta.run, meta.gen, step.name)
                await backend.set_if_absent(prefix + trigger, codec.dumps(data).decode())
                got = await backend.kv_scan(prefix)
                inputs = {k[len(prefix) :]: codec.loads(v) for k, v in got.items()}
                if set(step.subscribes) <= set(inputs):
                    # Every input's writer may get here; the derived id starts the join once.
                    joined = {t: inputs[t] for t in step.subscribes}
                    if await self.begin(meta.run, meta.gen, step, joined, "join"):
                        fc.followups.append(keys.step_job_id(meta.run, meta.gen, step.name, "join"))
            else:
                cause = (fc.job_id, trigger, occurrence)
                if await self.begin(meta.run, meta.gen, step, data, *cause):
                    fc.followups.append(keys.step_job_id(meta.run, meta.gen, step.name, *cause))

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
        once its signal arrives."""
        w = step.wait
        if w is None:
            return await self.enqueue_step(run, gen, step, data, *cause)
        if w.delay is not None:
            return await self.enqueue_step(run, gen, step, data, *cause, options={"delay": w.delay})
        if w.cron is not None:
            now = datetime.fromtimestamp(await self.client.backend.now(), UTC)
            at = w.cron.next_after(now)
            return await self.enqueue_step(run, gen, step, data, *cause, options={"at": at})
        return await self.waits.start(run, gen, step, data, cause)

    async def enqueue_step(
        self,
        run: str,
        gen: int,
        step: Step,
        data: Any,
        *cause: str,
        options: dict[str, Any] | None = None,
    ) -> bool:
        """Enqueue the step's job for this cause, unless it exists already. The run's index
        entry is written first: it is the claim, and a run with an entry is not over."""
        job_id = keys.step_job_id(run, gen, step.name, *cause)
        # Claimed before: by this same cause run again, or by a writer killed before its
        # enqueue. Only a missing record is written again.
        claimed = await self.index_step(run, gen, step, job_id)
        if not claimed and await self.client.backend.get(job_id) is not None:
            return True
        task = self.client.registry.get_task(step.name)
        flow = self.graph.flows.get(step.flow)
        if flow is not None and flow.step_timeout is not None and task.defaults.timeout is None:
            options = {**(options or {}), "timeout": flow.step_timeout}  # step > flow > job
        new = dataclasses.replace(
            self.client.new_job(task, data, options or {}), id=job_id, dedup_key="flow:" + job_id
        )
        await self.client.submit(task, new, {})
        return True

    async def index_step(self, run: str, gen: int, step: Step, job_id: str) -> bool:
        """Add the step's job to the run's index (a run with an entry is not over); False
        when it was there already."""
        marker = {"flow": step.flow, "step": step.name, "gen": gen, "at": time.time()}
        return await self.client.backend.set_if_absent(
            keys.job_key(run, job_id), codec.dumps(marker).decode()
        )

    # -- ending runs -----------------------------------------------------------------------
    async def check(self, run: str) -> RunState | None:
        """End the run if it is over: completed when no step is left to run, failed when a
        step failed for good and its flow does not continue. Returns the state it ended in."""
        backend = self.client.backend
        rec = await records.load(backend, run)
        if rec is None or rec.state != "running":
            return None
        flow = self.graph.flows.get(rec.flow)
        index = await backend.kv_scan(keys.job_prefix(run))
        ids = [k[len(keys.job_prefix(run)) :] for k in index]
        index_ids = set(ids)
        jobs = await self.client.get_jobs(ids)
        now = time.time()
        pending: list[str | None] = [
            i
            for i, raw in zip(ids, index.values(), strict=True)
            if (jobs[i].state in LIVE_STATES if i in jobs else not _purged(raw, now))
        ]
        waiting = await backend.kv_scan(keys.waiting_prefix(run))
        if any(k[len(keys.waiting_prefix(run)) :] not in index_ids for k in waiting):
            pending.append(None)  # a step waits for its signal (not yet in the index)
        failed = [j for j in jobs.values() if j.state in (JobState.FAILED, JobState.CANCELLED)]
        if failed and (flow is None or flow.on_failure == "fail"):
            first = failed[0]
            error = {"step": first.task, "job_id": first.id, **(first.error or {})}
            if await self.end(rec, "failed", error):
                await self.cancel_jobs(run)
            return "failed"
        if not pending:
            await self.end(rec, "completed", None)
            return "completed"
        return None

    async def end(self, rec: RunRecord, state: RunState, error: dict[str, Any] | None) -> bool:
        """End the run's generation in ``state``, once: False when it had ended already."""
        backend = self.client.backend
        if not await backend.set_if_absent(keys.end_key(rec.id, rec.gen), state):
            return False
        rec.state = state
        rec.ended_at = time.time()
        rec.error = error
        await records.save(backend, rec)
        await backend.kv_delete(keys.live_key(rec.id))
        flow = self.graph.flows.get(rec.flow)
        if flow is not None and (
            flow.cleanup == "immediate" or (flow.cleanup == "on_complete" and state == "completed")
        ):
            await State(self.client, rec.id, flow).clear()
        await self.publish(f"flow.{state}", rec.id, rec.flow, error=error)
        return True

    # -- starting and stopping runs ---------------------------------------------------------
    async def start_run(self, flow: str, data: Any = None) -> str:
        f = self.graph.flow(flow)
        f.check()
        rec = RunRecord(keys.new_run_id(), flow, data, await self.client.backend.now())
        await records.save(self.client.backend, rec)
        await self.client.backend.kv_set(keys.live_key(rec.id), flow)
        await self.publish("flow.started", rec.id, flow)
        await self.start_entries(rec, f)
        return rec.id

    async def start_entries(self, rec: RunRecord, flow: FlowDef) -> None:
        for step in flow.entries():
            await self.begin(rec.id, rec.gen, step, rec.input, "entry")

    async def cancel_run(self, run: str) -> bool:
        """Cancel a running run: its queued and running steps are cancelled. False when
        the run had ended already."""
        rec = await records.load(self.client.backend, run)
        if rec is None or rec.state != "running":
            return False
        ended = await self.end(rec, "cancelled", None)
        await self.cancel_jobs(run)
        return ended

    async def cancel_jobs(self, run: str) -> None:
        prefix = keys.job_prefix(run)
        ids = [k[len(prefix) :] for k in await self.client.backend.kv_scan(prefix)]
        for job in (await self.client.get_jobs(ids)).values():
            if job.state in LIVE_STATES:
                await self.client.cancel(job.id)
        await self.waits.drop(run)

    async def sweep(self) -> int:
        """Check every running run: ends those whose last checker died, resolves waits
        whose signal is stored, marks stalls. Returns how many runs ended."""
        backend = self.client.backend
        ended = 0
        for key in await backend.kv_scan(keys.live_prefix()):
            rec = await records.load(backend, key[len(keys.live_prefix()) :])
            if rec is None or rec.state != "running":
                await backend.kv_delete(key)  # its ender died before removing it
                continue
            await self.waits.rescue(rec.id)
            if await self.check(rec.id) is not None:
                ended += 1
            else:
                await self.stall_check(rec)
        return ended

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
        prefix = keys.job_prefix(rec.id)
        ids = [k[len(prefix) :] for k in await self.client.backend.kv_scan(prefix)]
        retried = 0
        for job in (await self.client.get_jobs(ids)).values():
            if job.state in (JobState.FAILED, JobState.CANCELLED) and await self.client.retry(
                job.id
            ):
                retried += 1
        await self.waits.rescue(rec.id)
        rec.stalled_at = None
        await records.save(self.client.backend, rec)
        await self.publish("flow.resumed", rec.id, rec.flow, retried=retried)
        return retried

    async def publish(self, type_: str, run: str, flow: str, **data: Any) -> None:
        event = Event(type_, None, None, None, {"run": run, "flow": flow, **data}, time.time())
        await self.client.backend.publish([event])
