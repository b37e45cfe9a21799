"""The REST API over the client: health, enqueue, jobs, events; queues, schedules and
workers come from ``operate``, the hook groups from ``hooks``, the flows from ``flows``."""

import hashlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from workhorse.client import KEEP, Client
from workhorse.errors import RunTimeout
from workhorse.events import run_of
from workhorse.http.auth import Caller
from workhorse.http.calls import CALL_QUEUE_PREFIX
from workhorse.http.enqueue import enqueue_job, fast_enqueue
from workhorse.http.errors import ERRORS, ApiError, ApiRoute, fast_route
from workhorse.http.flows import flows_routes
from workhorse.http.hooks import hooks_routes
from workhorse.http.models import (
    Done,
    Enqueued,
    EventOut,
    Health,
    JobList,
    JobOut,
    LogLine,
    RetryIn,
    event_out,
    job_out,
)
from workhorse.http.operate import operate_routes
from workhorse.http.params import (
    MAX_CURSOR,
    MAX_WAIT,
    NAME_PATTERN,
    JobId,
    Name,
    resume_after,
)
from workhorse.http.state import Api
from workhorse.http.stream import sse
from workhorse.http.triggers import triggers_routes
from workhorse.job import JOB_ID_PATTERN, JobKey, JobState

# A page of jobs ends at a job: the next starts after its creation time and id.
JOB_CURSOR = rf"^[0-9]{{1,13}}(\.[0-9]{{1,9}})?:{JOB_ID_PATTERN}$"


def api_routes(api: Api) -> APIRouter:
    r = APIRouter(prefix=api.prefix, route_class=ApiRoute, responses=ERRORS, tags=["workhorse"])
    client = api.client
    Read = Annotated[Caller, Depends(api.reader)]
    Write = Annotated[Caller, Depends(api.writer)]

    async def job_or_404(job_id: str) -> Any:
        job = await client.get_job(job_id)
        if job is None:
            raise ApiError(404, "NotFound", f"no job {job_id}; it may have been purged")
        return job

    # -- health ------------------------------------------------------------------------
    @r.get("/health", response_model=Health)
    async def health() -> Health:
        """Whether the store answers (no auth: for load balancers)."""
        backend = await client.store()
        return Health(ok=True, backend=backend.url.split("://")[0], now=await backend.now())

    # -- tasks and enqueue ---------------------------------------------------------------
    async def enqueue(
        name: Name,
        caller: Write,
        body: Annotated[Any, Body()] = None,
        wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT)] = None,
        delay: Annotated[float | None, Query(ge=0, le=365 * 86_400)] = None,
        priority: Annotated[int | None, Query(ge=-(2**31) + 1, le=2**31 - 1)] = None,
        queue: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Any:
        """Enqueue a job of task NAME with the body as its payload: 202 with its id and a
        Location. ``?wait=N`` answers 200 with the finished job if it ends within N
        seconds. An ``Idempotency-Key`` makes a repeat return the first request's job."""
        options = {
            k: v
            for k, v in (("delay", delay), ("priority", priority), ("queue", queue))
            if v is not None
        }
        return await enqueue_job(api, name, caller, body, options, wait, idempotency_key)

    r.add_api_route(
        "/tasks/{name}/jobs",
        enqueue,
        methods=["POST"],
        status_code=202,
        response_model=Enqueued,
        responses={200: {"model": JobOut, "description": "?wait=: the job, finished in time"}},
        route_class_override=fast_route(partial(fast_enqueue, api)),
    )

    # -- jobs ----------------------------------------------------------------------------
    @r.get("/jobs", response_model=JobList)
    async def list_jobs(
        caller: Read,
        queue: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")] = None,
        state: JobState | None = None,
        task: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")] = None,
        cursor: Annotated[str | None, Query(pattern=JOB_CURSOR)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> JobList:
        """Jobs newest first; pass ``next_cursor`` back as ``cursor`` for the next page
        (a keyset cursor: jobs added or deleted meanwhile shift nothing)."""
        jobs = await client.jobs(
            queue=queue, state=state, task=task, limit=limit, after=_after(cursor)
        )
        nxt = JobKey.of(jobs[-1]).cursor() if len(jobs) == limit else None
        return JobList(
            jobs=[job_out(j, CALL_QUEUE_PREFIX, caller.known) for j in jobs], next_cursor=nxt
        )

    @r.get("/jobs/{job_id}", response_model=JobOut, responses={304: {"description": "unchanged"}})
    async def get_job(
        job_id: JobId, caller: Read, if_none_match: Annotated[str | None, Header()] = None
    ) -> Response:
        """One job; send its ETag back as If-None-Match to get a 304 while it is unchanged."""
        out = job_out(await job_or_404(job_id), CALL_QUEUE_PREFIX, caller.known)
        body = out.model_dump_json().encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type="application/json", headers={"ETag": etag})

    @r.get(
        "/jobs/{job_id}/result",
        response_model=JobOut,
        responses={202: {"model": JobOut, "description": "not finished within ?wait="}},
    )
    async def job_result(
        job_id: JobId,
        caller: Read,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0,
    ) -> Response:
        """The job once it has finished: 200 at once if it already has, else after up to
        ``wait`` seconds; 202 with its current state if it is still running then."""
        job = await job_or_404(job_id)
        if not job.finished and wait:
            try:
                job = await client.wait(job_id, wait)
            except RunTimeout:
                job = await job_or_404(job_id)
        out = job_out(job, CALL_QUEUE_PREFIX, caller.known)
        return JSONResponse(out.model_dump(mode="json"), 200 if job.finished else 202)

    @r.get("/jobs/{job_id}/logs", response_model=list[LogLine])
    async def job_logs(job_id: JobId, caller: Read) -> Any:
        return (await job_or_404(job_id)).logs

    @r.get(
        "/jobs/{job_id}/events",
        response_model=list[EventOut],
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def job_events(
        request: Request,
        job_id: JobId,
        caller: Read,
        after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Any:
        """The job's events in the log after ``after`` (a JSON page scans at most 10,000
        events; a flow step's own are its run's, as in ``job_events``); with ``Accept:
        text/event-stream`` a stream that ends with its outcome."""
        after = resume_after(after, last_event_id)
        if "text/event-stream" in request.headers.get("accept", ""):
            return _stream(sse(client, after, _poll(client), job_id))
        out: list[EventOut] = []
        for _ in range(10):
            page = await client.events(after, 1000)
            out += [event_out(e) for e in page if e.job_id == job_id and run_of(e) is None]
            if len(page) < 1000 or len(out) >= limit:
                break
            after = page[-1].id
        return out[:limit]

    @r.post("/jobs/{job_id}/cancel", response_model=Done)
    async def cancel(job_id: JobId, caller: Write) -> Done:
        """Cancel a queued job now; ask an active one to stop (its state shows which)."""
        state = await client.cancel(job_id)
        if state is None:
            raise ApiError(404, "NotFound", f"no job {job_id}")
        return Done(ok=True, state=str(state))

    @r.post("/jobs/{job_id}/retry", response_model=Done)
    async def retry(job_id: JobId, caller: Write, body: RetryIn | None = None) -> Done:
        """Put a failed or cancelled job back in its queue with fresh attempts; with a body's
        ``data``, with that payload instead (422 when the task refuses it). The job's
        ``job.queued`` event then keeps the old payload and names the caller's scope."""
        job = await job_or_404(job_id)
        if job.queue.startswith(CALL_QUEUE_PREFIX):
            raise ApiError(409, "NotQueued", "an HTTP call's record is not retried: call again")
        data = body.data if body is not None and "data" in body.model_fields_set else KEEP
        if not await client.retry(job_id, data, by=f"api ({caller.scope} token)"):
            raise ApiError(
                409, "NotRetryable", f"job {job_id} is {job.state}, not failed or cancelled"
            )
        return Done(ok=True, state="queued")

    r.include_router(operate_routes(api))
    r.include_router(hooks_routes(api))
    r.include_router(flows_routes(api))
    r.include_router(triggers_routes(api))

    # -- events -------------------------------------------------------------------
    @r.get(
        "/events",
        response_model=list[EventOut],
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(
        request: Request,
        caller: Read,
        after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Any:
        """The event log after ``after``: a JSON page, or with ``Accept: text/event-stream``
        a live stream that resumes from ``Last-Event-ID`` after a dropped connection."""
        after = resume_after(after, last_event_id)
        if "text/event-stream" in request.headers.get("accept", ""):
            return _stream(sse(client, after, _poll(client)))
        return [event_out(e) for e in await client.events(after, limit)]

    return r


def _poll(client: Client) -> float:
    return min(client.settings.poll_interval, 0.5)


def _stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _after(cursor: str | None) -> JobKey | None:
    """The page's last job from a cursor (``CREATED:ID``, as ``JobKey.cursor`` writes it)."""
    if not cursor:
        return None
    at, _, job_id = cursor.partition(":")
    created = float(at)  # the route's pattern admits only digits here
    if created >= 2**40:  # past any store's clock (PostgreSQL refuses it)
        raise ApiError(400, "BadCursor", "cursor is not one this API gave; start again without it")
    return JobKey(job_id, created)
