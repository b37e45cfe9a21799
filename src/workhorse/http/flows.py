"""The REST routes of flows: the defined flows as graphs, starting runs (with ?wait= and
Idempotency-Key), runs paged and one run with its steps (ETag), its events (JSON or
SSE), cancel, restart and resume, signals, and the webhook that resumes a waiting step."""

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from workhorse.flows import (
    Flows,
    KeyInFlight,
    KeyReused,
    NothingToResume,
    RestartInFlight,
    RunHandle,
    RunInfo,
)
from workhorse.flows.records import RUN_STATES
from workhorse.flows.waits import WEBHOOK_SIGNAL
from workhorse.http.auth import Caller
from workhorse.http.closing import closing
from workhorse.http.errors import ERRORS, ApiError, ApiRoute
from workhorse.http.flow_models import (
    FlowList,
    FlowOut,
    Resumed,
    RunList,
    RunOut,
    RunStarted,
    flow_out,
    run_out,
    summary_out,
)
from workhorse.http.models import Done, EventOut, event_out
from workhorse.http.params import MAX_CURSOR, MAX_WAIT, Name, resume_after
from workhorse.http.state import Api
from workhorse.job import JobKey

RunId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
# A page of runs ends at a run: the next one starts after its creation time and id.
RunCursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,20}(\.[0-9]{1,9})?:[0-9a-f]{16}$")]
T = TypeVar("T")
# The events that end a run's stream.
_LAST = frozenset({"flow.completed", "flow.failed", "flow.cancelled"})


def flows_routes(api: Api) -> APIRouter:
    # Included under the API's prefix by the REST router (as the hooks routes are).
    r = APIRouter(route_class=ApiRoute, responses=ERRORS, tags=["flows"])
    client, flows = api.client, api.flows
    Read = Annotated[Caller, Depends(api.reader)]
    Write = Annotated[Caller, Depends(api.writer)]

    def known_flow(name: str) -> None:
        if name not in flows.graph.flows:
            known = ", ".join(flows.names()) or "none"
            raise ApiError(404, "NotFound", f"no flow {name!r} in the app (flows: {known})")

    async def run_or_404(run_id: str) -> RunInfo:
        try:
            return await flows.get(run_id)
        except LookupError:
            raise ApiError(
                404,
                "NotFound",
                f"no flow run {run_id}; it may have been cleared, or removed by retention",
            ) from None

    def location(run_id: str) -> str:
        return f"{api.prefix}/runs/{run_id}"

    @r.get("/flows", response_model=FlowList)
    async def list_flows(caller: Read) -> FlowList:
        """Every flow the app defines, as a graph: its steps (entry, subscriptions, emits,
        wait), the edges between them, its entry and last steps."""
        return FlowList(flows=[flow_out(flows[n]) for n in flows.names()])

    @r.get("/flows/{flow}", response_model=FlowOut)
    async def get_flow(flow: Name, caller: Read) -> FlowOut:
        known_flow(flow)
        return flow_out(flows[flow])

    @r.post(
        "/flows/{flow}/runs",
        status_code=202,
        response_model=RunStarted,
        responses={200: {"model": RunOut, "description": "?wait=: the run, ended in time"}},
    )
    async def start(
        flow: Name,
        caller: Write,
        response: Response,
        body: Annotated[Any, Body()] = None,
        wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT)] = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Any:
        """Start a run of FLOW with the body as its entry steps' input: 202 with its id and
        a Location. ``?wait=N`` answers 200 with the run if it ends within N seconds. An
        ``Idempotency-Key`` makes a repeat return the first request's run."""
        known_flow(flow)
        flows[flow].check()
        if idempotency_key is None:
            out = RunStarted(id=(await flows.start(flow, body)).id, flow=flow, state="running")
        else:
            out = await start_once(flows, flow, body, idempotency_key)
            if out.replayed:
                response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = location(out.id)
        if wait:
            try:
                info = await flows.handle(out.id, flow).wait(wait)
            except TimeoutError:
                return out
            except LookupError:  # ended, and removed by its flow's keep_for, meanwhile
                return out.model_copy(update={"state": "cleared"})
            return JSONResponse(
                run_out(info, api.prefix).model_dump(mode="json"), headers=dict(response.headers)
            )
        return out

    @r.get("/flows/{flow}/runs", response_model=RunList)
    async def list_runs(
        flow: Name,
        caller: Read,
        state: str | None = None,
        cursor: RunCursor = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> RunList:
        """The flow's runs newest first, in one state if asked; pass ``next_cursor`` back
        as ``cursor`` for the next page."""
        known_flow(flow)
        if state is not None and state not in RUN_STATES:
            raise ApiError(
                400, "BadState", f"state must be one of {', '.join(RUN_STATES)}, got {state!r}"
            )
        runs = await flows.list(flow, state, limit=limit + 1, after=JobKey.from_cursor(cursor))
        page = runs[:limit]
        return RunList(
            runs=[summary_out(x) for x in page],
            next_cursor=JobKey(page[-1].id, page[-1].created_at).cursor()
            if len(runs) > limit
            else None,
        )

    @r.get("/runs/{run_id}", response_model=RunOut, responses={304: {"description": "unchanged"}})
    async def get_run(
        run_id: RunId, caller: Read, if_none_match: Annotated[str | None, Header()] = None
    ) -> Response:
        """The run with every step's state, input, output, attempts and times, and the
        waits not yet resolved; send its ETag back as If-None-Match for a 304."""
        body = run_out(await run_or_404(run_id), api.prefix).model_dump_json().encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type="application/json", headers={"ETag": etag})

    @r.get(
        "/runs/{run_id}/events",
        response_model=list[EventOut],
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def run_events(
        request: Request,
        run_id: RunId,
        caller: Read,
        after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Any:
        """The run's events (flow.*, and its steps' as step.*) after ``after``; with
        ``Accept: text/event-stream`` a stream that ends with the run's outcome."""
        await run_or_404(run_id)
        after = resume_after(after, last_event_id)
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(
                _sse(flows, run_id, after, min(client.settings.poll_interval, 0.5)),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        events = [e for e in await flows.events(run_id) if e.id > after]
        return [event_out(e) for e in events[:limit]]

    @r.post("/runs/{run_id}/cancel", response_model=Done)
    async def cancel(run_id: RunId, caller: Write) -> Done:
        """Cancel a running run: its queued and running steps are cancelled."""
        info = await run_or_404(run_id)
        if not await flows.cancel(run_id):
            raise ApiError(409, "NotRunning", f"run {run_id} is {info.state}, not running")
        return Done(ok=True, state="cancelled")

    @r.post("/runs/{run_id}/restart", response_model=RunStarted, status_code=202)
    async def restart(
        run_id: RunId,
        caller: Write,
        response: Response,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> RunStarted:
        """Run it again from its original input, under the same id (live steps are
        cancelled first). Requests that arrive together restart it once (``replayed``
        on the others); an ``Idempotency-Key`` makes a repeat within a day (a resend after
        a lost reply) restart nothing."""
        await run_or_404(run_id)
        try:
            if idempotency_key is None:
                h = await flows.restart(run_id)
            else:
                h = await keyed(flows.restart(run_id, key=checked_key(idempotency_key)))
        except RestartInFlight as exc:
            raise ApiError(409, "RestartInFlight", str(exc)) from None
        if h.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = location(run_id)
        return RunStarted(id=h.id, flow=h.flow, state=await started_state(h), replayed=h.replayed)

    @r.post("/runs/{run_id}/resume", response_model=Resumed)
    async def resume(run_id: RunId, caller: Write) -> Resumed:
        """Go on with a stalled, failed or cancelled run where it stopped: failed and
        cancelled steps run again, completed ones keep their outputs, waits whose signal is
        stored are resolved. 409 when the run completed with no failed step (restart runs
        it again), or while a restart of it is under way."""
        await run_or_404(run_id)
        try:
            return Resumed(ok=True, resumed=await flows.resume(run_id))
        except NothingToResume:
            raise ApiError(
                409,
                "Completed",
                f"run {run_id} completed with no failed step; POST .../restart runs it again",
            ) from None
        except RestartInFlight as exc:
            raise ApiError(409, "RestartInFlight", str(exc)) from None

    @r.post("/signals/{name}", response_model=Resumed)
    async def signal(
        name: Name,
        caller: Write,
        body: Annotated[Any, Body()] = None,
        key: Annotated[str, Query(max_length=200)] = "",
    ) -> Resumed:
        """Send signal NAME with the body as its data: the steps waiting for it with this
        ``key`` resume; it is kept a day for a wait that starts later."""
        if name == WEBHOOK_SIGNAL:
            raise ApiError(
                400,
                "ReservedSignal",
                f"signal {WEBHOOK_SIGNAL!r} resumes webhook waits: POST to the wait's "
                "/runs/{run_id}/webhooks/{step} instead",
            )
        return Resumed(ok=True, resumed=await flows.signal(name, body, key=key))

    @r.post("/runs/{run_id}/webhooks/{step}", response_model=Resumed)
    async def webhook(run_id: RunId, step: Name, request: Request) -> Resumed:
        """Resume STEP of the run, waiting for a webhook, with the body as its signal. A
        wait declared ``{"webhook": {"signed": True}}`` takes a Standard Webhooks
        signature (a delivery id is taken once); others need a write token."""
        # The caller is checked before the run is looked up: no run id is confirmed to
        # a caller who may not resume it.
        hooks = [w.webhook for x in flows.graph.tasks.get(step, []) for w in x.waits]
        kinds = {h.signed for h in hooks if h is not None}
        if not kinds:
            raise ApiError(404, "NotFound", f"no step {step!r} of any flow waits for a webhook")
        if True in kinds:
            caller = Caller("webhook", False, delivery=await api.auth.verify_webhook(request))
        else:
            caller = await api.auth.require(request, "write")
        try:
            info = await run_or_404(run_id)
        except ApiError:
            await api.auth.forget(caller)
            raise
        defined = flows.graph.step(info.flow, step)
        if defined is None or all(w.webhook is None for w in defined.waits):
            await api.auth.forget(caller)
            raise ApiError(
                404, "NotFound", f"step {step!r} of flow {info.flow!r} waits for no webhook"
            )
        raw = await request.body()
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            await api.auth.forget(caller)
            raise ApiError(400, "BadBody", "the webhook's body is not JSON") from None
        pending = [w for w in info.waits if w["step"] == step and w["signal"] == WEBHOOK_SIGNAL]
        n = 0
        for w in pending:
            n += await flows.signal(WEBHOOK_SIGNAL, data, key=w["key"])
        if not n:
            await api.auth.forget(caller)
            raise ApiError(
                409,
                "NotWaiting",
                f"step {step!r} of run {run_id} is not waiting for its webhook (the run is "
                f"{info.state}; the wait has not started, or was resumed already)",
            )
        return Resumed(ok=True, resumed=n)

    return r


async def start_once(flows: Flows, flow: str, data: Any, key: str) -> RunStarted:
    """Start a run once per Idempotency-Key: a repeat (concurrent, or after a lost reply)
    gets the first request's run; the same key with another body is refused."""
    h = await keyed(flows.start(flow, data, key=checked_key(key)))
    return RunStarted(id=h.id, flow=flow, state=await started_state(h), replayed=h.replayed)


async def started_state(h: RunHandle) -> str:
    """A started run's state: a replayed key's run may have moved on, or been cleared."""
    if not h.replayed:
        return "running"
    try:
        return (await h.info()).state
    except LookupError:
        return "cleared"


def checked_key(key: str) -> str:
    if not key or len(key) > 255:
        raise ApiError(400, "BadIdempotencyKey", "Idempotency-Key must be 1-255 characters")
    return key


async def keyed(start: Awaitable[T]) -> T:
    """A keyed start's outcome, its refusals as the answers of an Idempotency-Key."""
    try:
        return await start
    except KeyReused:
        raise ApiError(
            422,
            "IdempotencyKeyReused",
            "this Idempotency-Key was used with a different body; use a new key for a new request",
        ) from None
    except KeyInFlight:
        raise ApiError(
            409,
            "IdempotencyKeyInFlight",
            "the first request with this key is still starting its run; retry shortly",
        ) from None


async def _sse(flows: Flows, run_id: str, after: int, poll: float) -> AsyncIterator[bytes]:
    """The run's events after ``after``, then new ones, until its outcome; a comment line
    every idle poll keeps proxies from closing the stream."""
    yield b"retry: 1000\n\n"
    while True:
        events = [e for e in await flows.events(run_id) if e.id > after]
        for e in events:
            after = e.id
            data = event_out(e).model_dump_json().encode()
            yield b"id: %d\nevent: %s\ndata: %s\n\n" % (e.id, e.type.encode(), data)
            if e.type in _LAST:
                return
        await asyncio.sleep(poll)
        if closing():
            return
        if not events:
            yield b": idle\n\n"
