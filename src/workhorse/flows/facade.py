"""``app.flows``: define flows, start runs, and inspect, cancel, restart or clear them."""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from workhorse import codec
from workhorse.backends import Backend
from workhorse.client import Client
from workhorse.errors import BackendError, BackendUnavailable, ConfigError
from workhorse.flows import keys, listing, records
from workhorse.flows.engine import Engine
from workhorse.flows.graph import Cleanup, FlowDef, Graph, OnFailure, Step
from workhorse.flows.once import once
from workhorse.flows.records import RUN_STATES, FlowFailed, RunInfo, RunRecord
from workhorse.flows.waiting import SIGNAL_TTL, phase_of
from workhorse.flows.waits import TIMER_TASK
from workhorse.job import Event, JobKey
from workhorse.settings import check_name
from workhorse.task import Seconds

log = logging.getLogger("workhorse.flows")

# How often ``RunHandle.result`` looks at the run's record.
POLL = 0.02
# How long it waits, once the run ended, for its ender to remove the run's state and send
# its end event.
SETTLE = 2.0
END_EVENTS = frozenset(("flow.completed", "flow.failed", "flow.cancelled"))

# Runs read per page by ``list(limit=None)``.
LIST_BATCH = 500
# Seconds a restart holds its generation's restart (keys.restart_key) while it writes the
# next one, and the longest a second restart of that generation waits for it.


class RestartInFlight(ConfigError):
    """Another restart of the run's generation has not written the next one in time."""


class NothingToResume(ConfigError):
    """The run completed with no failed step: restart runs it again."""


class RunHandle:
    """A started run: its id, and ``await result(timeout)`` for its outcome."""

    def __init__(self, flows: Flows, run_id: str, flow: str, replayed: bool = False) -> None:
        self.flows = flows
        self.id = run_id
        self.flow = flow
        self.replayed = replayed  # a key seen before: the first start's run

    def __repr__(self) -> str:
        return f"<RunHandle {self.flow} {self.id}>"

    async def info(self) -> RunInfo:
        return await self.flows.get(self.id)

    async def wait(self, timeout: float | None = None) -> RunInfo:
        """The run's view once it ended (any way); TimeoutError after ``timeout``;
        LookupError when the run is gone (removed by retention after its end)."""
        backend = self.flows.client.backend
        async with asyncio.timeout(timeout):
            while True:
                rec = await records.load(backend, self.id)
                if rec is None:  # its record is written before its handle is returned
                    raise LookupError(
                        f"no flow run {self.id!r}: removed after its end (its flow's "
                        "keep_for, else keep_completed_for / keep_failed_for), or never started"
                    )
                if rec.state != "running":
                    await self._settled(rec.gen)
                    return await self.flows.get(self.id)
                await asyncio.sleep(POLL)

    async def _settled(self, gen: int) -> None:
        """The ender removes the run's live entry after the run's state (by the cleanup
        rule), then sends its end event: wait for both, a while at most (an ender that
        died leaves them to the sweep), so that the run's events read after its end hold
        it. Each generation ends with one end event, and once more after each resume
        that reopened it."""
        backend = self.flows.client.backend
        deadline = time.monotonic() + SETTLE
        while await backend.kv_get(keys.live_key(self.id)) is not None:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(POLL)
        after = ends = 0
        while True:
            events = await self.flows.events(self.id, after=after)
            ends += sum(e.type in END_EVENTS for e in events) - sum(
                e.type == "flow.resumed" and "reopened" in e.data for e in events
            )
            if ends > gen or time.monotonic() > deadline:
                return
            after = events[-1].id if events else after
            await asyncio.sleep(POLL)

    async def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The outputs of the run's last steps (those nothing follows), by step; raises
        FlowFailed when the run failed or was cancelled."""
        info = await self.wait(timeout)
        if info.state != "completed":
            raise FlowFailed(info)
        leaves = set(self.flows.graph.flow(info.flow).leaves())
        return {s.step: s.output for s in info.steps if s.step in leaves and s.state == "completed"}


class Flows:
    """The app's flows. Steps are tasks registered with ``flow=`` (``@app.task``)."""

    def __init__(self, client: Client, graph: Graph | None = None) -> None:
        self.client = client
        self.graph = graph or Graph()
        self.engine = Engine(client, self.graph)
        self._indexed: Backend | None = None  # the store whose index ``indexed`` checked

    # -- definition ------------------------------------------------------------------------
    def define(
        self,
        name: str,
        *,
        on_failure: OnFailure | None = None,
        cleanup: Cleanup | None = None,
        state_ttl: float | None = None,
        stall_timeout: float | None = None,
        step_timeout: float | None = None,
        keep_for: Seconds | Literal["forever"] | None = None,
    ) -> FlowDef:
        """Set a flow's policies: ``on_failure`` ("fail" the run, or "continue" the other
        branches), ``cleanup`` of its state ("never", "on_complete", "immediate", "ttl")
        ``state_ttl`` (seconds), and ``stall_timeout``: seconds without progress after
        which a running run is marked stalled (a ``flow.stalled`` event); ``step_timeout``:
        seconds for its steps whose task sets no ``timeout`` (then ``job_timeout``);
        ``keep_for``: seconds its ended runs are kept before the workers remove them, or
        "forever" (unset: ``keep_completed_for``, ``keep_failed_for`` as for jobs)."""
        return self.graph.configure(
            name,
            on_failure=on_failure,
            cleanup=cleanup,
            state_ttl=state_ttl,
            stall_timeout=stall_timeout,
            step_timeout=step_timeout,
            keep_for=keep_for,
        )

    async def resume(self, run_id: str) -> int:
        """Go on with a stalled, failed or cancelled run from where it stopped (or a
        completed one whose failed branches ``on_failure="continue"`` passed over): its
        failed and cancelled steps run again from their input, completed steps keep their
        outputs, waits whose signal is stored are resolved and a stall mark is cleared.
        Returns how many steps were retried."""
        rec = await self._record(run_id)
        if rec.state == "completed" and not any(
            s.state in ("failed", "cancelled") for s in (await self.get(run_id)).steps
        ):  # a completed run resumes only for the failed branches on_failure="continue" left
            raise NothingToResume(
                f"run {run_id} completed with no failed step; nothing to resume "
                "(restart(run_id) runs it again)"
            )
        # A resume holds its generation as a restart does: the two never interleave (a
        # restart that comes meanwhile waits for it, then restarts).
        backend = self.client.backend
        token = await records.hold(backend, run_id, rec.gen)
        if token is None:
            raise RestartInFlight(
                f"run {run_id} is being restarted, resumed or removed by another call; "
                "look at the run (app.flows.get) before resuming it"
            )
        try:
            return await self.engine.resume(await self._held(rec))
        finally:
            await records.release(backend, run_id, rec.gen, token)

    def add_step(
        self,
        task: str,
        flow: str | Sequence[str],
        entry: bool = False,
        subscribes: Sequence[str] | None = None,
        emits: Sequence[str] | None = None,
        wait: Any = None,
        triggers: Sequence[str] | None = None,
    ) -> list[Step]:
        steps = self.graph.add_step(task, flow, entry, subscribes, emits, wait, triggers)
        timed = any(w.timeout is not None or s.after is w for s in steps for w in s.waits)
        if timed and TIMER_TASK not in self.client.registry.tasks:
            waits = self.engine.waits

            async def timer(data: dict[str, Any]) -> None:
                await waits.timed_out(data["wait"], data.get("timer"))

            self.client.registry.add_task(timer, name=TIMER_TASK)
        return steps

    async def signal(
        self, name: str, data: Any = None, *, key: Any = "", ttl: float | None = SIGNAL_TTL
    ) -> int:
        """Send a signal: the steps waiting for ``name`` with this ``key`` resume with
        ``{"input": ..., "signal": data}``. It is kept ``ttl`` seconds (a day; None: until
        cleared) for a wait that starts later. Returns how many waits it resumed."""
        check_name(name, "signal")
        await self.client.store()
        return await self.engine.waits.signal(name, data, str(key), ttl)

    def __getitem__(self, name: str) -> FlowDef:
        return self.graph.flow(name)

    def names(self) -> list[str]:
        return sorted(self.graph.flows)

    # -- runs ------------------------------------------------------------------------------
    async def start(self, flow: str, data: Any = None, *, key: str | None = None) -> RunHandle:
        """Start a run of ``flow`` with ``data`` as its entry steps' input. With ``key``
        a repeat within a day (concurrent, or after a lost reply) returns the first
        start's run (``handle.replayed``); the same key with other data raises KeyReused."""
        if key is None:
            await self.client.store()
            return RunHandle(self, await self.engine.start_run(flow, data), flow)
        return await self._once(
            f"start\0{flow}\0{key}", key, data, lambda: self.engine.start_run(flow, data), flow
        )

    async def trigger(
        self, name: str, data: Any = None, *, key: str | None = None
    ) -> builtins.list[RunHandle]:
        """Fire trigger ``name`` from outside a run: one run starts of every flow whose
        entry lists it in ``triggers=[...]``, with ``data`` as its input. With ``key`` a
        repeat within a day starts nothing and returns the first runs. A trigger no flow
        listens to starts nothing: the list is empty."""
        check_name(name, "trigger")
        started = self.graph.started_by(name)
        for f in started:
            f.check()  # every flow is valid before any run starts
        if key is None:
            return [await self.start(f.name, data) for f in started]
        if not started:
            return []

        async def fan_out() -> str:
            # Each flow's start keyed too: a fan-out killed midway, done again once its
            # key is free, starts only the runs it had not started.
            return ",".join(
                [
                    (
                        await self._once(
                            f"trigger {name}\0{f.name}\0{key}",
                            key,
                            data,
                            functools.partial(self.engine.start_run, f.name, data),
                            f.name,
                        )
                    ).id
                    for f in started
                ]
            )

        # One key for the whole fan-out: requests that arrive together are one first and
        # the others its replays, not each the first of some of the flows.
        backend = await self.client.store()
        ids, replayed = await once(backend, f"fan-out {name}\0{key}", key, data, fan_out, name)
        return [
            RunHandle(self, run_id, f.name, replayed)
            for run_id, f in zip(ids.split(","), started, strict=False)
        ]

    async def _once(
        self,
        scope: str,
        key: str,
        data: Any,
        act: Callable[[], Awaitable[str]],
        flow: str,
        what: str = "start",
    ) -> RunHandle:
        """``act`` (a start, a trigger's start or a restart, which answers its run's id)
        once per ``key`` in ``scope``; a repeat gets the first one's run."""
        backend = await self.client.store()
        run_id, replayed = await once(backend, scope, key, data, act, flow, what)
        return RunHandle(self, run_id, flow, replayed)

    def handle(self, run_id: str, flow: str = "") -> RunHandle:
        return RunHandle(self, run_id, flow)

    async def _record(self, run_id: str) -> RunRecord:
        if not isinstance(run_id, str) or not keys.is_run_id(run_id):
            raise ConfigError(f"invalid run id {run_id!r}: a run id is 16 hex digits")
        rec = await records.load(await self.client.store(), run_id)
        if rec is None:
            raise LookupError(f"no flow run {run_id!r}; app.flows.list() shows the runs")
        return rec

    async def _held(self, rec: RunRecord) -> RunRecord:
        """The run's record read again once its generation is held: a removal or a
        restart that came between the first read and the hold is not undone."""
        now = await records.load(self.client.backend, rec.id)
        if now is None:
            raise LookupError(f"flow run {rec.id!r} was removed meanwhile")
        if now.gen != rec.gen:
            raise RestartInFlight(f"run {rec.id} was restarted meanwhile; look at the run")
        return now

    async def get(self, run_id: str) -> RunInfo:
        """The run with every step's state, input, output, attempts and times."""
        rec = await self._record(run_id)
        backend = self.client.backend
        prefix = keys.job_prefix(run_id)
        index = await backend.kv_scan(prefix)
        ids = [k[len(prefix) :] for k in index]
        jobs = await self.client.get_jobs(ids)
        steps = [
            records.step_info(codec.loads(raw)["step"], job_id, jobs.get(job_id))
            for job_id, raw in zip(ids, index.values(), strict=True)
        ]
        steps.sort(key=lambda s: (s.started_at is None, s.started_at or 0.0, s.step))
        waits = await self.engine.waits.pending(run_id)
        children = keys.child_prefix(run_id)
        return RunInfo(
            rec.id,
            rec.flow,
            rec.state,
            rec.input,
            rec.created_at,
            rec.ended_at,
            rec.error,
            steps,
            rec.stalled_at,
            [
                {**{k: w[k] for k in ("step", "signal", "key", "since")}, "phase": phase_of(w)}
                for w in waits
            ],
            rec.parent,
            [k[len(children) :] for k in await backend.kv_scan(children)],
        )

    async def list(
        self,
        flow: str | None = None,
        state: str | None = None,
        *,
        limit: int | None = 50,
        after: JobKey | None = None,
    ) -> builtins.list[RunRecord]:
        """Runs newest first (creation time, then id), of one flow and in one state if
        asked, ``limit`` at a time (None: every one); ``after=JobKey(last.id,
        last.created_at)`` starts after a page's last run (a keyset page: runs started
        meanwhile shift nothing). A page reads about one page of the store's index of
        runs; with ``state``, it reads on through the flow's runs until the page is full."""
        if state is not None and state not in RUN_STATES:
            raise ConfigError(f"state must be one of {', '.join(RUN_STATES)}, got {state!r}")
        if limit is not None and limit < 0:
            raise ConfigError(f"limit must be 0 or more, got {limit}")
        backend = await self.indexed()
        if limit is not None:
            return await listing.page(backend, flow, state, limit, after)
        out: builtins.list[RunRecord] = []
        while batch := await listing.page(backend, flow, state, LIST_BATCH, after):
            out += batch
            last = batch[-1]
            after = JobKey(last.id, last.created_at)
        return out

    async def counts(self) -> tuple[dict[str, dict[str, int]], bool]:
        """``{flow: {state: n}}`` over the newest ``listing.COUNTED`` runs (every defined
        flow present), and whether those were every run stored."""
        return await listing.counts(await self.indexed(), self.names())

    async def indexed(self) -> Backend:
        """The store, its runs from before the index given their keys (once per store)."""
        backend = await self.client.store()
        if self._indexed is not backend:
            try:
                await listing.backfill(backend)
            except BackendUnavailable:
                raise
            except BackendError:  # a write refused (Redis at maxmemory): reads go on
                log.warning(
                    "runs stored before the index of runs are not listed until it can be "
                    "written; the store refused the write",
                    exc_info=True,
                )
                return backend
            self._indexed = backend
        return backend

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run: queued and running steps are cancelled. False if it had ended."""
        await self._record(run_id)
        return await self.engine.cancel_run(run_id)

    async def restart(self, run_id: str, *, key: str | None = None) -> RunHandle:
        """Run it again from its original input, as a new generation under the same id
        (steps still live are cancelled first). Restarts of one generation at once (two
        operators, a client resending after a timeout) write one new generation: the
        others wait for it and get its handle (``handle.replayed``). With ``key``, a
        repeat within a day restarts nothing and returns the run (``replayed``): a
        resend after the first restart finished does not restart it again."""
        if key is None:
            return await self._restart(run_id)
        rec = await self._record(run_id)  # an unknown run holds no key

        async def act() -> str:
            return (await self._restart(run_id)).id

        scope = f"restart\0{run_id}\0{key}"
        return await self._once(scope, key, None, act, rec.flow, "restart")

    async def _restart(self, run_id: str) -> RunHandle:
        rec = await self._record(run_id)
        listed = listing.entries(rec)  # its index keys, by its creation time until now
        if rec.gen >= keys.MAX_GEN:
            raise ConfigError(f"run {run_id} was restarted {rec.gen} times; start a new run")
        flow = self.graph.flow(rec.flow)  # an unknown flow fails before anything changes
        backend = self.client.backend
        gen = rec.gen
        claim, token = keys.restart_key(run_id, gen), await records.hold(backend, run_id, gen)
        if token is None:
            return await self._restarted(run_id, gen)
        try:
            rec = await self._held(rec)
            if rec.state == "running":
                await self.engine.end(rec, "cancelled", None)
            await self._settle(rec)
            await self.engine.cancel_jobs(run_id, gen)
            await self.engine.cancel_children(run_id)  # the new generation starts its own
            prefix = keys.job_prefix(run_id)
            for k in await backend.kv_scan(prefix):
                await backend.kv_delete(keys.resolved_key(k[len(prefix) :]))
                await backend.kv_delete(k)
            rec.gen += 1
            rec.state = "running"
            rec.ended_at = None
            rec.error = None
            rec.stalled_at = None
            rec.created_at = await backend.now()
            if await backend.kv_get(claim) != token:
                raise RestartInFlight(
                    f"run {run_id}'s restart took over {records.HOLD_TTL:g}s; another "
                    "restart may have taken it over: look at the run before restarting again"
                )
            # One write, as a start's; the live entry marked as keeping state: the earlier
            # generations' state is cleared by its end.
            await self.engine.write_start(rec, flow, rec.flow + keys.STATEFUL, restart=rec.gen)
        except BaseException:
            await backend.kv_delete(claim, token)  # no generation written: free again
            raise
        for k in listed.keys() - listing.entries(rec).keys():  # after the new: always listed
            await backend.kv_delete(k)
        return RunHandle(self, run_id, rec.flow)

    async def _settle(self, rec: RunRecord) -> None:
        """Wait for the ender of the ended generation ``rec`` to remove its live entry
        (and its state, by the cleanup rule) and send its end event, a while at most; then
        do it in its place: an ender still at it would remove the next generation's
        entry, and one that died would never send the event."""
        backend = self.client.backend
        deadline = time.monotonic() + SETTLE
        while await backend.kv_get(keys.live_key(rec.id)) is not None:
            if time.monotonic() > deadline:
                ended = await records.load(backend, rec.id)
                state = ended.state if ended is not None else rec.state
                if state != "running" and await self.engine.settle(rec.id, rec.flow, state):
                    error = ended.error if ended is not None else None
                    await self.engine.publish(f"flow.{state}", rec.id, rec.flow, error=error)
                return
            await asyncio.sleep(POLL)

    async def _restarted(self, run_id: str, gen: int) -> RunHandle:
        """The handle of the restart of ``gen`` under way in another call, once it wrote
        the next generation; this call restarts it if that one failed."""
        backend = self.client.backend
        deadline = time.monotonic() + records.HOLD_TTL
        while time.monotonic() < deadline:
            rec = await self._record(run_id)
            if rec.gen > gen:
                return RunHandle(self, run_id, rec.flow, replayed=True)
            if await backend.kv_get(keys.restart_key(run_id, gen)) is None:
                return await self._restart(run_id)  # that restart failed: its claim is free
            await asyncio.sleep(POLL)
        raise RestartInFlight(
            f"another restart of run {run_id} has not written its generation in "
            f"{records.HOLD_TTL:g}s; look at the run (app.flows.get) before restarting again"
        )

    async def clear(self, flow: str | None = None) -> int:
        """Remove ended runs (their records, indexes and state) now, of one flow if asked,
        whatever their retention; running runs are kept. Returns how many were removed."""
        n = 0
        for rec in await self.list(flow, limit=None):
            if rec.state != "running" and await self.engine.remove_run(rec.id):
                n += 1
        return n

    async def check(self, run_id: str) -> str | None:
        """End the run now if it is over (what the workers' sweep does)."""
        return await self.engine.check(run_id)

    async def events(
        self, run_id: str, limit: int = 100_000, *, after: int = 0
    ) -> builtins.list[Event]:
        """The run's events in order: flow.*, step.* (started, completed, failed,
        retrying, cancelled, waiting, resumed), emit and state, each with the run, flow
        and (for a step's) the step in ``data``; those after the event id ``after``."""
        backend = await self.client.store()
        out: builtins.list[Event] = []
        cursor = after
        # Read by run: the cost does not grow with other runs' events in the log.
        while batch := await backend.run_events(run_id, cursor, min(1000, limit - len(out))):
            cursor = batch[-1].id
            out += [e for e in batch if of_run(e, run_id)]
            if len(out) >= limit or len(batch) < 1000:
                break
        return out[:limit]


def of_run(event: Event, run_id: str) -> bool:
    """Whether ``event`` is one the flows wrote for the run (not its jobs' job.* ones)."""
    return event.data.get("run") == run_id and not event.type.startswith("job.")
