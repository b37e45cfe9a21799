"""Flows in the dashboard: runs by flow and state, a run's graph, timeline and state, and
the actions start, cancel, restart and resume, all through ``app.flows``."""

from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from workhorse.client import HasClient, client_of
from workhorse.dashboard.board import Board, read_form
from workhorse.dashboard.flowgraph import NODE_H, NODE_W, layout
from workhorse.dashboard.queries import PAGE
from workhorse.dashboard.session import Session
from workhorse.dashboard.timeline import Timelines
from workhorse.errors import WorkhorseError
from workhorse.flows import Flows, State, listing
from workhorse.flows.records import RUN_STATES
from workhorse.job import JobKey

FLOW = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$"
RunId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
# A step's state as a word and a legend entry: the colour repeats what the text says.
LEGEND = [
    ("pending", "not started"),
    ("waiting", "waiting for a signal"),
    ("scheduled", "scheduled"),
    ("queued", "queued"),
    ("active", "running"),
    ("retrying", "retrying"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("missing", "record purged"),
]


def flows_of(app: HasClient) -> Flows:
    """The app's flows (their definitions draw the graphs), else none defined."""
    found = getattr(app, "flows", None)
    return found if isinstance(found, Flows) else Flows(client_of(app))


def flow_routes(board: Board, flows: Flows) -> APIRouter:
    r = APIRouter()
    client = board.client
    timelines = Timelines(client, flows)
    Seen = Annotated[Session, Depends(board.session)]
    Acting = Annotated[Session, Depends(board.writer)]
    Flow = Annotated[str, Path(pattern=FLOW)]
    StateQ = Annotated[str | None, Query(pattern="^(" + "|".join(RUN_STATES) + ")?$")]
    CursorQ = Annotated[str | None, Query(max_length=100)]
    FlowQ = Annotated[str | None, Query(pattern="^([A-Za-z0-9_][A-Za-z0-9_.:-]{0,199})?$")]

    # -- list -------------------------------------------------------------------------------
    async def list_values(
        flow: str | None, state: str | None, cursor: str | None
    ) -> dict[str, Any]:
        counts, every = await flows.counts()
        # A keyset page: runs started meanwhile shift nothing.
        chosen = await flows.list(
            flow or None, state or None, limit=PAGE + 1, after=JobKey.from_cursor(cursor)
        )
        page = chosen[:PAGE]
        return {
            "counts": counts,
            "counted": None if every else listing.COUNTED,
            "states": RUN_STATES,
            "defined": flows.names(),
            "flow": flow or "",
            "state": state or "",
            "runs": page,
            "next_cursor": JobKey(page[-1].id, page[-1].created_at).cursor()
            if len(chosen) > PAGE
            else None,
        }

    @r.get("/flows", response_class=HTMLResponse)
    async def flows_page(
        request: Request,
        session: Seen,
        flow: FlowQ = None,
        state: StateQ = None,
        cursor: CursorQ = None,
    ) -> HTMLResponse:
        values = await list_values(flow, state, cursor)
        return board.page("flows.html", request, session, **values)

    @r.get("/parts/flows", response_class=HTMLResponse)
    async def flows_part(
        request: Request,
        session: Seen,
        flow: FlowQ = None,
        state: StateQ = None,
        cursor: CursorQ = None,
    ) -> HTMLResponse:
        values = await list_values(flow, state, cursor)
        return board.page("parts/flows.html", request, session, **values)

    # -- a run ------------------------------------------------------------------------------
    async def run_values(run_id: str) -> dict[str, Any]:
        try:
            info, events = await timelines.read(run_id)
        except LookupError:
            raise HTTPException(404, f"no flow run {run_id}; it may have been cleared") from None
        defined = flows.graph.flows.get(info.flow)
        waiting = {w["step"] for w in info.waits}
        runtimes = {
            name: str(task.defaults.runtime)
            for name, task in client.registry.tasks.items()
            if defined is not None and name in defined.steps
        }
        drawing = None if defined is None else layout(defined, info.steps, waiting, runtimes)
        state = await State(client, run_id, defined).all()
        return {
            "run": info,
            "input": board.redact(info.input),
            "drawing": drawing,
            "node_w": NODE_W,
            "node_h": NODE_H,
            "legend": LEGEND,
            "events": events,
            "values": board.redact(state),
            "live": info.state == "running",
        }

    @r.get("/flows/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(run_id: RunId, request: Request, session: Seen) -> HTMLResponse:
        return board.page("flow_run.html", request, session, **await run_values(run_id))

    @r.get("/parts/flows/runs/{run_id}", response_class=HTMLResponse)
    async def run_part(run_id: RunId, request: Request, session: Seen) -> HTMLResponse:
        return board.page("parts/flow_run.html", request, session, **await run_values(run_id))

    # -- actions ----------------------------------------------------------------------------
    def back(path: str, done: str) -> RedirectResponse:
        board.shared.clear()
        return RedirectResponse(f"{board.prefix}{path}?done={quote(done)}", status_code=303)

    @r.post("/flows/{flow}/start")
    async def start(flow: Flow, session: Acting, request: Request) -> RedirectResponse:
        raw = (await read_form(request)).get("data", "").strip() or "null"
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return back("/flows", 'not started: the input is not JSON (e.g. {"id": 7})')
        try:
            handle = await flows.start(flow, data)
        except WorkhorseError as exc:
            return back("/flows", f"not started: {exc}")
        return back(f"/flows/runs/{handle.id}", f"run of {flow} started")

    async def act(run_id: str, what: str, key: str | None = None) -> str:
        try:
            if what == "cancel":
                ok = await flows.cancel(run_id)
                return "run cancelled" if ok else "not cancelled: the run had ended"
            if what == "restart":
                h = await flows.restart(run_id, key=key)
                if h.replayed:
                    return "run restarted once: this restart was asked for twice"
                return "run restarted from its input"
            n = await flows.resume(run_id)
            return f"run resumed: {n} step(s) retried"
        except LookupError:
            raise HTTPException(404, f"no flow run {run_id}") from None
        except WorkhorseError as exc:
            return f"not done: {exc}"

    @r.post("/flows/runs/{run_id}/cancel")
    async def cancel(run_id: RunId, session: Acting) -> RedirectResponse:
        return back(f"/flows/runs/{run_id}", await act(run_id, "cancel"))

    @r.post("/flows/runs/{run_id}/restart")
    async def restart(run_id: RunId, session: Acting, request: Request) -> RedirectResponse:
        # The form carries its page's run start (its generation's): sent twice (a double
        # click, a resent form), it restarts that generation once.
        key = (await read_form(request)).get("key") or None
        return back(f"/flows/runs/{run_id}", await act(run_id, "restart", key and f"page:{key}"))

    @r.post("/flows/runs/{run_id}/resume")
    async def resume(run_id: RunId, session: Acting) -> RedirectResponse:
        return back(f"/flows/runs/{run_id}", await act(run_id, "resume"))

    return r
