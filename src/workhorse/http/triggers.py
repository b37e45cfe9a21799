"""``GET /triggers``: every trigger of the app's flows, with the steps that fire it, the
steps that run on it and the entries it starts, read from the flows' graphs; and
``POST /triggers/{name}``, which fires an external trigger: one run of each flow whose
entry lists it."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Response
from pydantic import BaseModel

from workhorse.http.auth import Caller
from workhorse.http.errors import ERRORS, ApiRoute
from workhorse.http.flow_models import publishers
from workhorse.http.flows import checked_key, keyed, started_state
from workhorse.http.params import Name
from workhorse.http.state import Api


class TriggerUse(BaseModel):
    flow: str
    publishers: list[str]  # steps that fire it (``step:NAME``: NAME completing)
    subscribers: list[str]  # steps that run on it
    starts: list[str] = []  # entries listing it: firing it from outside starts a run


class TriggerOut(BaseModel):
    name: str
    flows: list[TriggerUse]


class TriggerList(BaseModel):
    triggers: list[TriggerOut]


class FiredRun(BaseModel):
    id: str
    flow: str
    state: str
    location: str
    replayed: bool = False  # an Idempotency-Key seen before: the first request's run


class Fired(BaseModel):
    trigger: str
    runs: list[FiredRun]
    message: str | None = None  # set when no run started: no flow listens to it


def triggers_routes(api: Api) -> APIRouter:
    r = APIRouter(route_class=ApiRoute, responses=ERRORS, tags=["flows"])
    flows = api.flows
    Read = Annotated[Caller, Depends(api.reader)]
    Write = Annotated[Caller, Depends(api.writer)]

    @r.get("/triggers", response_model=TriggerList)
    async def list_triggers(caller: Read) -> TriggerList:
        """Every trigger a step of a flow emits or subscribes to, by name, with the
        flows that use it: which steps fire it and which run on it."""
        uses: dict[str, list[TriggerUse]] = {}
        for name in flows.names():
            f = flows[name]
            found = {t for s in f.steps.values() for t in (*s.subscribes, *s.emits, *s.triggers)}
            for t in sorted(found):
                uses.setdefault(t, []).append(
                    TriggerUse(
                        flow=name,
                        publishers=publishers(f, t),
                        subscribers=[s.name for s in f.subscribers(t)],
                        starts=[s.name for s in f.entries() if t in s.triggers],
                    )
                )
        return TriggerList(triggers=[TriggerOut(name=t, flows=uses[t]) for t in sorted(uses)])

    @r.post("/triggers/{name}", status_code=202, response_model=Fired)
    async def fire(
        name: Name,
        caller: Write,
        response: Response,
        body: Annotated[Any, Body()] = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Fired:
        """Fire trigger NAME from outside a run: one run starts of each flow whose entry
        lists it (``triggers=[...]``), with the body as its input; 202 with the runs (a
        Location when one started). An ``Idempotency-Key`` makes a repeat start nothing
        and return the first request's runs. A trigger no flow listens to starts nothing
        and says so in ``message``."""
        key = None if idempotency_key is None else checked_key(idempotency_key)
        handles = await keyed(flows.trigger(name, body, key=key))
        runs = [
            FiredRun(
                id=h.id,
                flow=h.flow,
                state=await started_state(h),
                location=f"{api.prefix}/runs/{h.id}",
                replayed=h.replayed,
            )
            for h in handles
        ]
        if len(runs) == 1:
            response.headers["Location"] = runs[0].location
        if runs and all(x.replayed for x in runs):
            response.headers["Idempotent-Replayed"] = "true"
        message = None
        if not runs:
            message = (
                f"no flow listens to trigger {name!r}: no run started; list it in an entry "
                "step's triggers=[...] (GET /triggers shows the triggers of each flow)"
            )
        return Fired(trigger=name, runs=runs, message=message)

    return r
