"""``GET /triggers``: every trigger of the app's flows, with the steps that fire it and
the steps that run on it, read from the flows' graphs.

Triggers fire inside a run (an entry step subscribes to nothing), so there is no route
that fires one from outside; ``POST /flows/{flow}/runs`` starts a run and
``POST /signals/{name}`` resumes waiting steps."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from workhorse.http.auth import Caller
from workhorse.http.errors import ERRORS, ApiRoute
from workhorse.http.flow_models import publishers
from workhorse.http.state import Api


class TriggerUse(BaseModel):
    flow: str
    publishers: list[str]  # steps that fire it (``step:NAME``: NAME completing)
    subscribers: list[str]  # steps that run on it


class TriggerOut(BaseModel):
    name: str
    flows: list[TriggerUse]


class TriggerList(BaseModel):
    triggers: list[TriggerOut]


def triggers_routes(api: Api) -> APIRouter:
    r = APIRouter(route_class=ApiRoute, responses=ERRORS, tags=["flows"])
    flows = api.flows
    Read = Annotated[Caller, Depends(api.reader)]

    @r.get("/triggers", response_model=TriggerList)
    async def list_triggers(caller: Read) -> TriggerList:
        """Every trigger a step of a flow emits or subscribes to, by name, with the
        flows that use it: which steps fire it and which run on it."""
        uses: dict[str, list[TriggerUse]] = {}
        for name in flows.names():
            f = flows[name]
            found = {t for s in f.steps.values() for t in (*s.subscribes, *s.emits)}
            for t in sorted(found):
                subs = [s.name for s in f.subscribers(t)]
                uses.setdefault(t, []).append(
                    TriggerUse(flow=name, publishers=publishers(f, t), subscribers=subs)
                )
        return TriggerList(triggers=[TriggerOut(name=t, flows=uses[t]) for t in sorted(uses)])

    return r
