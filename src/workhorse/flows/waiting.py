"""Waits for signals in the store: start one, resolve it by its signal or its timer, drop
a run's waits. Each wait is a record under its signal and key (what a signal finds) and an
entry under its run (so the run is not over while it waits)."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Protocol

from workhorse import codec
from workhorse.client import Client
from workhorse.flows import keys, records
from workhorse.flows.graph import Graph, Step
from workhorse.flows.records import RunRecord, RunState
from workhorse.flows.waits import TIMER_TASK
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

    async def index_step(self, run: str, gen: int, step: Step, job_id: str) -> bool: ...

    async def publish(self, type_: str, run: str, flow: str, **data: Any) -> None: ...

    async def end(self, rec: RunRecord, state: RunState, error: dict[str, Any] | None) -> bool: ...

    async def cancel_jobs(self, run: str) -> None: ...


log = logging.getLogger("workhorse.flows")

# How long a signal is kept for a wait that has not started yet, by default.
SIGNAL_TTL = 86_400.0


class Waits:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def backend(self) -> Any:
        return self.engine.client.backend

    async def start(
        self, run: str, gen: int, step: Step, data: Any, cause: tuple[str, ...]
    ) -> bool:
        w = step.wait
        assert w is not None
        signal = w.signal_name
        job_id = keys.step_job_id(run, gen, step.name, *cause)
        if await self.backend.kv_get(keys.resolved_key(job_id)) is not None:
            return True  # the cause ran again after its wait was resolved
        key = w.key_of(data, run, gen, step.name)
        record = {
            "run": run,
            "gen": gen,
            "flow": step.flow,
            "step": step.name,
            "input": data,
            "cause": list(cause),
            "job": job_id,
            "signal": signal,
            "key": key,
            "timer": 0,
            "since": time.time(),
        }
        wait_key = keys.wait_prefix(signal, key) + job_id
        await self.backend.kv_set(keys.waiting_prefix(run) + job_id, wait_key)
        await self.backend.kv_set(wait_key, codec.dumps(record).decode())
        if w.timeout is not None:
            await self.arm(step, record, wait_key)
        await self.engine.publish(
            "step.waiting", run, step.flow, step=step.name, signal=signal, key=key
        )
        stored = await self.backend.kv_get(keys.signal_key(signal, key))
        if stored is not None:  # it arrived before the wait started
            await self.resolve(record, wait_key, codec.loads(stored))
        return True

    async def arm(self, step: Step, record: dict[str, Any], wait_key: str) -> None:
        """Enqueue the wait's timer, due when its timeout passes."""
        assert step.wait is not None
        assert step.wait.timeout is not None
        client = self.engine.client
        task = client.registry.get_task(TIMER_TASK)
        timer_id = self.timer_id(record)
        new = dataclasses.replace(
            client.new_job(
                task,
                {"wait": wait_key},
                {
                    "delay": step.wait.timeout,
                    "queue": client.registry.get_task(step.name).defaults.queue,
                },
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

    async def resolve(self, record: dict[str, Any], wait_key: str, signal: Any) -> bool:
        """Start the waiting step with its input and the signal's data, once."""
        if not await self.claim(record["job"], "signal"):
            return False
        step = self.engine.graph.step(record["flow"], record["step"])
        if step is None:
            return False
        # Indexed and enqueued before the wait is forgotten: a resolver killed in between
        # leaves the wait, which the timer or the sweep resolves again.
        await self.engine.enqueue_step(
            record["run"],
            record["gen"],
            step,
            {"input": record["input"], "signal": signal},
            *record["cause"],
        )
        await self.forget(record, wait_key)
        timer = await self.engine.client.get_job(self.timer_id(record))
        if timer is not None and timer.state in LIVE_STATES:
            await self.engine.client.cancel(timer.id)
        await self.engine.publish(
            "step.resumed", record["run"], record["flow"], step=record["step"], by="signal"
        )
        return True

    async def forget(self, record: dict[str, Any], wait_key: str) -> None:
        await self.backend.kv_delete(wait_key)
        await self.backend.kv_delete(keys.waiting_prefix(record["run"]) + record["job"])

    async def timed_out(self, wait_key: str) -> None:
        """The timer's job: the wait's timeout passed."""
        raw = await self.backend.kv_get(wait_key)
        if raw is None:
            return  # resolved (or dropped) before its timeout
        record = codec.loads(raw)
        stored = await self.backend.kv_get(keys.signal_key(record["signal"], record["key"]))
        if stored is not None:  # its signal came, and whoever stored it did not finish
            await self.resolve(record, wait_key, codec.loads(stored))
            return
        step = self.engine.graph.step(record["flow"], record["step"])
        if step is None or step.wait is None:
            return
        action = step.wait.on_timeout
        if action == "retry":
            record["timer"] += 1
            await self.backend.kv_set(wait_key, codec.dumps(record).decode())
            await self.arm(step, record, wait_key)
            return
        if not await self.claim(record["job"], "timeout"):
            return
        what = "a webhook" if step.wait.webhook else f"signal {record['signal']!r}"
        message = f"wait for {what} timed out after {step.wait.timeout:g}s"
        if action == "continue":
            await self.engine.enqueue_step(
                record["run"],
                record["gen"],
                step,
                {"input": record["input"], "signal": None, "timed_out": True},
                *record["cause"],
            )
            await self.forget(record, wait_key)
            await self.engine.publish(
                "step.resumed", record["run"], record["flow"], step=step.name, by="timeout"
            )
            return
        await self.forget(record, wait_key)
        rec = await records.load(self.backend, record["run"])
        if rec is not None and rec.state == "running" and rec.gen == record["gen"]:
            error = {"step": step.name, "type": "WaitTimeout", "message": message}
            if await self.engine.end(rec, "failed", error):
                await self.engine.cancel_jobs(rec.id)

    async def signal(self, name: str, data: Any, key: str, ttl: float | None) -> int:
        """Store the signal, then resolve the waits for it; returns how many it resolved."""
        await self.backend.kv_set(keys.signal_key(name, key), codec.dumps(data).decode(), ttl)
        n = 0
        prefix = keys.wait_prefix(name, key)
        for wait_key, raw in (await self.backend.kv_scan(prefix)).items():
            if await self.resolve(codec.loads(raw), wait_key, data):
                n += 1
        return n

    async def drop(self, run: str) -> None:
        """Forget the run's waits and cancel their timers (the run was cancelled or failed)."""
        prefix = keys.waiting_prefix(run)
        for entry, wait_key in (await self.backend.kv_scan(prefix)).items():
            raw = await self.backend.kv_get(wait_key)
            if raw is not None:
                record = codec.loads(raw)
                timer = await self.engine.client.get_job(self.timer_id(record))
                if timer is not None and timer.state in LIVE_STATES:
                    await self.engine.client.cancel(timer.id)
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
