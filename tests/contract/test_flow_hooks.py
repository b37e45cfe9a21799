"""Hooks filtered by flow, on every backend: ``@app.on(..., flow="x")`` gets the job
events of x's steps as well as its flow events, for a task in one flow or in several
(then its run tells which), and never another flow's or a plain job's."""

from __future__ import annotations

from typing import Any

from workhorse import Workhorse

from .support import eventually


async def test_a_flow_filter_keeps_the_job_events_of_that_flows_steps(app: Workhorse) -> None:
    billed: list[Any] = []
    audited: list[Any] = []
    seen: list[Any] = []

    @app.on("job.completed", flow="bill*")
    async def billing(event: Any) -> None:
        billed.append(event.job_id)

    @app.on("job.completed", flow="audit")
    def auditing(event: Any) -> None:  # a sync handler too
        audited.append(event.job_id)

    @app.on("job.completed")
    async def every(event: Any) -> None:
        seen.append(event.job_id)

    @app.task(name="record_it", flow=["billing", "audit"], entry=True)
    async def record_it(data: Any) -> Any:
        return data

    @app.task(name="charge_card", flow="billing", subscribes=["step:record_it"])
    async def charge_card(data: Any) -> Any:
        return data

    @app.task(name="plain")
    async def plain(data: Any) -> Any:
        return data

    await app.start_worker(concurrency=2)
    await app.start_listener(poll_interval=0.02, from_start=True)
    bill = await app.flows.start("billing", 1)
    audit = await app.flows.start("audit", 2)
    await bill.result(timeout=10)
    await audit.result(timeout=10)
    await (await app.enqueue("plain", 3)).result(timeout=10)

    async def all_seen() -> bool:
        return len(seen) >= 4 and len(billed) >= 2 and len(audited) >= 1

    await eventually(all_seen, "the completions at the hooks")
    await app.stop_listener()
    bills = {s.step: s.job_id for s in (await app.flows.get(bill.id)).steps}
    audits = {s.step: s.job_id for s in (await app.flows.get(audit.id)).steps}
    assert sorted(billed) == sorted([bills["record_it"], bills["charge_card"]])
    assert audited == [audits["record_it"]]  # record_it of the billing run is not audit's
