"""Waits in the store: start one (before a step's job, or after its handler returned),
resolve it by its signal or its timer, drop a run's waits. Each wait is a record under its
signal and key (what a signal finds) and an entry under its run (so the run is not over
while it waits)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Protocol

from workhorse import codec
from workhorse.client import Client
from workhorse.flows import keys, records
from workhorse.flows.graph import Graph, Step
from workhorse.flows.records import RunRecord, RunState
from workhorse.flows.waits import TIMER_TASK, Wait, after_name
from workhorse.job import LIVE_STATES


class Engine(Protocol):
    """What waits ask of the engine (kept apart: the engine holds the waits)."""

    client: Client
    graph: Graph

    async def enqueue_step(
        self,
        run: str,
        gen: int,
        step: Step,
        data: Any,
        *cause: str,
        options: dict[str, Any] | None = None,
    ) -> bool: ...

    async def release(self, record: dict[str, Any], data: Any) -> None: ...

    async def check(self, run: str) -> RunState | None: ...

    def publish(self, type_: str, run: str, flow: str, **data: Any) -> Awaitable[None]: ...

    async def end(self, rec: RunRecord, state: RunState, error: dict[str, Any] | None) -> bool: ...

    async def cancel_jobs(self, run: str, upto: int) -> None: ...


log = logging.getLogger("workhorse.flows")

# How long a signal is kept for a wait that has not started yet, by default.
SIGNAL_TTL = 86_400.0


def phase_of(record: dict[str, Any]) -> str:
    return "after" if record.get("phase") == "after" else "before"


def wait_of(step: Step, record: dict[str, Any]) -> Wait | None:
    """The wait of ``step`` that ``record`` is (before or after it)."""
    return step.after if phase_of(record) == "after" else step.wait


class Waits:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def backend(self) -> Any:
        return self.engine.client.backend

    async def start(
        self, run: str, gen: int, step: Step, data: Any, cause: tuple[str, ...]
    ) -> bool:
        """Wait before the step's job for this cause (its signal, or its webhook)."""
        w = step.wait
        assert w is not None
        record = {
            "run": run,
            "gen": gen,
            "flow": step.flow,
            "step": step.name,
            "phase": "before",
            "input": data,
            "cause": list(cause),
            "job": keys.step_job_id(run, gen, step.name, *cause),
            "signal": w.signal_name,
            "key": w.key_of(data, run, gen, step.name),
            "timer": 0,
        }
        await self.open(step, w, record, {"delay": w.timeout})
        return True

    async def start_after(
        self, run: str, gen: int, step: Step, job_id: str, data: Any, output: Any
    ) -> None:
        """Wait after the step's job ``job_id`` returned ``output``, before its completion
        fires; its key is read from the output."""
        w = step.after
        assert w is not None
        cause = (job_id, "after")
        if w.cron is not None:
            now = datetime.fromtimestamp(await self.backend.now(), UTC)
            options: dict[str, Any] = {"at": w.cron.next_after(now)}
        else:
            options = {"delay": w.delay if w.delay is not None else w.timeout}
        record = {
            "run": run,
            "gen": gen,
            "flow": step.flow,
            "step": step.name,
            "phase": "after",
            "input": data,
            "output": output,
            "of": job_id,
            "cause": list(cause),
            "job": keys.step_job_id(run, gen, step.name, *cause),
            "signal": w.signal_name,
            "key": w.key_of(output, run, gen, after_name(step.name)),
            "timer": 0,
        }
        await self.open(step, w, record, options)

    async def open(
        self, step: Step, w: Wait, record: dict[str, Any], timer: dict[str, Any]
    ) -> None:
        """Store the wait once (a cause or step that runs again finds it and arms
        nothing more), arm its timer, and resolve it at once if its signal came first."""
        job_id = record["job"]
        if await self.backend.kv_get(keys.resolved_key(job_id)) is not None:
            return  # it ran again after its wait was resolved
        wait_key = keys.wait_prefix(record["signal"], record["key"]) + job_id
        record["since"] = time.time()
        await self.backend.kv_set(keys.waiting_prefix(record["run"]) + job_id, wait_key)
        if await self.backend.set_if_absent(wait_key, codec.dumps(record).decode()):
            new = True
        else:
            raw = await self.backend.kv_get(wait_key)
            if raw is None:
                return  # resolved meanwhile
            record, new = codec.loads(raw), False
        if not w.for_signal or w.timeout is not None:
            await self.arm(step, record, wait_key, timer)
        if new:
            await self.engine.publish(
                "step.waiting",
                record["run"],
                step.flow,
                step=step.name,
                phase=record["phase"],
                signal=record["signal"],
                key=record["key"],
            )
        if w.for_signal:
            stored = await self.backend.kv_get(keys.signal_key(record["signal"], record["key"]))
            if stored is not None:  # it arrived before the wait started
                await self.resolve(record, wait_key, codec.loads(stored))

    async def arm(
        self, step: Step, record: dict[str, Any], wait_key: str, when: dict[str, Any]
    ) -> None:
        """Enqueue the wait's timer (its number in the record), due ``when``: at its
        timeout, or at the end of its delay or at its cron time."""
        client = self.engine.client
        task = client.registry.get_task(TIMER_TASK)
        timer_id = self.timer_id(record)
        new = dataclasses.replace(
            client.new_job(
                task,
                {"wait": wait_key, "timer": record["timer"]},
                {**when, "queue": client.registry.get_task(step.name).defaults.queue},
            ),
            id=timer_id,
            dedup_key="flow:" + timer_id,
        )
        await client.submit(task, new, {})

    @staticmethod
    def timer_id(record: dict[str, Any]) -> str:
        return keys.step_job_id(
            record["run"],
            record["gen"],
            record["step"],
            *record["cause"],
            "timer",
            str(record["timer"]),
        )

    async def claim(self, job_id: str, by: str) -> bool:
        """Claim the wait's resolution for ``by``; True also when ``by`` had claimed it
        (its resolver ran again)."""
        if await self.backend.set_if_absent(keys.resolved_key(job_id), by):
            return True
        return bool(await self.backend.kv_get(keys.resolved_key(job_id)) == by)

    async def resolve(
        self, record: dict[str, Any], wait_key: str, signal: Any, timer: bool = False
    ) -> bool:
        """Go on with the signal's data, once (``timer``: the wait's own timer found it)."""
        if not await self.claim(record["job"], "signal"):
            return False
        await self.proceed(record, wait_key, {"signal": signal}, "signal", timer)
        return True

    async def proceed(
        self,
        record: dict[str, Any],
        wait_key: str,
        extra: dict[str, Any] | None,
        by: str,
        timer: bool,
    ) -> None:
        """The wait is over: before a step, start it with its input (and ``extra``); after
        it, fire its completion with its output (and ``extra``). Done before the wait is
        forgotten: a resolver killed in between leaves the wait, which the timer or the
        sweep resolves again."""
        step = self.engine.graph.step(record["flow"], record["step"])
        if step is None:
            return
        after = phase_of(record) == "after"
        field = "output" if after else "input"
        data = record[field] if extra is None else {field: record[field], **extra}
        if after:
            await self.engine.release(record, data)
        else:
            await self.engine.enqueue_step(
                record["run"], record["gen"], step, data, *record["cause"]
            )
        await self.over(record, wait_key, by, timer)

    async def over(self, record: dict[str, Any], wait_key: str, by: str, timer: bool) -> None:
        """Forget the wait once what it held back is on its way, and say so."""
        await self.forget(record, wait_key)
        if not timer:
            await self.cancel_timer(record)
        await self.engine.publish(
            "step.resumed", record["run"], record["flow"], step=record["step"], by=by
        )
        if phase_of(record) == "after":  # a step that leads nowhere was the run's last
            await self.engine.check(record["run"])

    async def cancel_timer(self, record: dict[str, Any]) -> None:
        timer = await self.engine.client.get_job(self.timer_id(record))
        if timer is not None and timer.state in LIVE_STATES:
            await self.engine.client.cancel(timer.id)

    async def forget(self, record: dict[str, Any], wait_key: str) -> None:
        await self.backend.kv_delete(wait_key)
        await self.backend.kv_delete(keys.waiting_prefix(record["run"]) + record["job"])

    async def timed_out(self, wait_key: str, timer: int | None = None) -> None:
        """The timer's job: the wait's timeout passed (or its delay or cron time came)."""
        raw = await self.backend.kv_get(wait_key)
        if raw is None:
            return  # resolved (or dropped) before its timeout
        record = codec.loads(raw)
        step = self.engine.graph.step(record["flow"], record["step"])
        w = None if step is None else wait_of(step, record)
        if step is None or w is None:
            return
        if timer is not None and timer != record["timer"]:
            # An earlier timer that ran again: the wait was re-armed past it. Its successor
            # is armed again (one id), in case the first run died before arming it.
            if timer == record["timer"] - 1:
                await self.arm(step, record, wait_key, {"delay": w.timeout})
            return
        if not w.for_signal:  # a delay or cron time after the step: it is over
            if await self.claim(record["job"], "timer"):
                await self.proceed(record, wait_key, None, "timer", True)
            return
        stored = await self.backend.kv_get(keys.signal_key(record["signal"], record["key"]))
        if stored is not None:  # its signal came, and whoever stored it did not finish
            await self.resolve(record, wait_key, codec.loads(stored), timer=True)
            return
        if w.on_timeout == "retry" and phase_of(record) == "before":
            await self.rearm(step, w, record, wait_key)
            return
        if not await self.claim(record["job"], "timeout"):
            return
        what = "a webhook" if w.webhook else f"signal {record['signal']!r}"
        message = f"wait for {what} timed out after {w.timeout:g}s"
        if w.on_timeout == "continue":
            extra = {"signal": None, "timed_out": True}
            await self.proceed(record, wait_key, extra, "timeout", True)
            return
        if w.on_timeout == "retry":  # after the step: run it again, from its input
            await self.engine.enqueue_step(
                record["run"], record["gen"], step, record["input"], record["of"], "retry"
            )
            await self.over(record, wait_key, "retry", True)
            return
        await self.forget(record, wait_key)
        rec = await records.load(self.backend, record["run"])
        if rec is not None and rec.state == "running" and rec.gen == record["gen"]:
            error = {"step": step.name, "type": "WaitTimeout", "message": message}
            if await self.engine.end(rec, "failed", error):
                await self.engine.cancel_jobs(rec.id, rec.gen)

    async def rearm(self, step: Step, w: Wait, record: dict[str, Any], wait_key: str) -> None:
        """Wait as long again under the next timer; a wait resolved or dropped meanwhile
        is not written back."""
        record["timer"] += 1
        await self.backend.kv_set(wait_key, codec.dumps(record).decode())
        entry = await self.backend.kv_get(keys.waiting_prefix(record["run"]) + record["job"])
        if entry is None or await self.backend.kv_get(keys.resolved_key(record["job"])):
            await self.backend.kv_delete(wait_key)
            return
        await self.arm(step, record, wait_key, {"delay": w.timeout})

    async def signal(self, name: str, data: Any, key: str, ttl: float | None) -> int:
        """Store the signal, then resolve the waits for it; returns how many it resolved."""
        await self.backend.kv_set(keys.signal_key(name, key), codec.dumps(data).decode(), ttl)
        n = 0
        prefix = keys.wait_prefix(name, key)
        for wait_key, raw in (await self.backend.kv_scan(prefix)).items():
            if await self.resolve(codec.loads(raw), wait_key, data):
                n += 1
        return n

    async def drop(self, run: str, upto: int | None = None) -> None:
        """Forget the run's waits and cancel their timers (the run was cancelled or failed),
        those of generation ``upto`` and before if given."""
        prefix = keys.waiting_prefix(run)
        for entry, wait_key in (await self.backend.kv_scan(prefix)).items():
            raw = await self.backend.kv_get(wait_key)
            if raw is not None:
                record = codec.loads(raw)
                if upto is not None and record.get("gen", 0) > upto:
                    continue
                await self.cancel_timer(record)
                await self.backend.kv_delete(wait_key)
            await self.backend.kv_delete(entry)

    async def rescue(self, run: str) -> int:
        """Resolve the run's waits whose signal is stored (its sender died between storing
        it and resolving them); returns how many."""
        n = 0
        for wait_key in (await self.backend.kv_scan(keys.waiting_prefix(run))).values():
            raw = await self.backend.kv_get(wait_key)
            if raw is None:
                continue
            record = codec.loads(raw)
            if not record["signal"]:
                continue  # a delay or cron time: its timer ends it
            stored = await self.backend.kv_get(keys.signal_key(record["signal"], record["key"]))
            if stored is not None and await self.resolve(record, wait_key, codec.loads(stored)):
                n += 1
        return n

    async def pending(self, run: str) -> list[dict[str, Any]]:
        """The run's waits not yet resolved."""
        out = []
        for wait_key in (await self.backend.kv_scan(keys.waiting_prefix(run))).values():
            raw = await self.backend.kv_get(wait_key)
            if raw is not None:
                out.append(codec.loads(raw))
        return out

    async def timed(self, run: str) -> bool:
        """Whether one of the run's waits has a timer (a timeout, a delay, a cron time)
        that will end it: such a run waits, it is not stalled."""
        for record in await self.pending(run):
            step = self.engine.graph.step(record["flow"], record["step"])
            w = None if step is None else wait_of(step, record)
            if w is not None and (w.timeout is not None or not w.for_signal):
                return True
        return False
