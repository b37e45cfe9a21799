"""The pages (GET): overview (with the hooks panel), queue, job, schedules, workers, and
the fragments that live updates reload. Every read goes through the public client, bounded."""

import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from workhorse.cron import parse_cron
from workhorse.dashboard.board import Board
from workhorse.dashboard.charts import Charts
from workhorse.dashboard.hooks import LagReader
from workhorse.dashboard.live import Tail, stream
from workhorse.dashboard.queries import attempts_of, job_page
from workhorse.dashboard.session import COOKIE, Session
from workhorse.http import CALL_QUEUE_PREFIX
from workhorse.job import FINISHED_STATES, JOB_ID_PATTERN, JobState

NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$"
STATES = [s.value for s in JobState]
JobId = Annotated[str, Path(pattern=f"^{JOB_ID_PATTERN}$")]
Queue = Annotated[str, Path(pattern=NAME)]


async def job_values(board: Board, job_id: str, live: bool = False) -> dict[str, object]:
    """What a job's page shows; ``edit_text`` fills the form that retries it with a new
    payload (redacted: the fields shown as ``***`` keep their stored values)."""
    job = await board.client.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}; it may have been purged")
    # A live reload of an active job reads its record only; events once it finished.
    finished = job.state in FINISHED_STATES
    # Read by the job's id (an index range; on Redis the ids its record keeps), not the log.
    events = await board.client.job_events(job.id) if finished or not live else []
    data = board.redact(job.data)
    return {
        "job": job,
        "data": data,
        "result": board.redact(job.result),
        "error": job.error,
        "logs": [board.redact(line) for line in job.logs],
        "progress": job.progress,
        "events": events,
        "attempts": attempts_of(events),
        "finished": finished,
        "call": job.queue.startswith(CALL_QUEUE_PREFIX),
        "live": live and not finished,
        "edit_text": json.dumps(data, indent=2),
        "edit_error": None,
    }


def page_routes(board: Board, tail: Tail, charts: Charts, hook_lag: LagReader) -> APIRouter:
    r = APIRouter()
    client = board.client
    Seen = Annotated[Session, Depends(board.session)]

    shared = board.shared

    # A shared read serves while the event log has not moved (and for at most a second),
    # so a page reloaded on a change notice never gets a read from before that change.
    async def counts() -> dict[str, dict[str, int]]:
        return dict(await shared.get(f"{tail.cursor}\0counts", client.counts))

    async def one_queue(name: str) -> dict[str, int]:
        """A queue's counts; a private one is left out of the shared listing: named."""
        if name.startswith(CALL_QUEUE_PREFIX):
            return (await client.counts([name])).get(name, {})
        return (await counts()).get(name, {})

    async def paused() -> set[str]:
        return set(await shared.get(f"{tail.cursor}\0paused", client.paused))

    async def queue_rows() -> list[dict[str, object]]:
        counts_now = await counts()
        paused_now = await paused()
        empty = dict.fromkeys(STATES, 0)
        return [
            {"name": q, "paused": q in paused_now, "counts": {**empty, **counts_now.get(q, {})}}
            for q in sorted(set(counts_now) | paused_now)
        ]

    async def worker_rows() -> tuple[list[object], dict[str, list[object]], float]:
        workers = await client.workers()
        running: dict[str, list[object]] = {}
        busy = any(w.active for w in workers)  # else no read of jobs at all
        for job in await client.jobs(state=JobState.ACTIVE, limit=200) if busy else []:
            running.setdefault(job.worker or "", []).append(job)
        now = await (await client.store()).now()
        return list(workers), running, now

    # -- overview -------------------------------------------------------------------------
    @r.get("/", response_class=HTMLResponse)
    async def overview(request: Request, session: Seen) -> HTMLResponse:
        workers, running, now = await worker_rows()
        return board.page(
            "overview.html",
            request,
            session,
            queues=await queue_rows(),
            states=STATES,
            workers=workers,
            running=running,
            now=now,
            groups=await hook_lag(),
        )

    @r.get("/parts/queues", response_class=HTMLResponse)
    async def queues_part(request: Request, session: Seen) -> HTMLResponse:
        return board.page(
            "parts/queues.html", request, session, queues=await queue_rows(), states=STATES
        )

    @r.get("/parts/workers", response_class=HTMLResponse)
    async def workers_part(request: Request, session: Seen) -> HTMLResponse:
        workers, running, now = await worker_rows()
        return board.page(
            "parts/workers.html", request, session, workers=workers, running=running, now=now
        )

    @r.get("/charts.json")
    async def chart_data(
        session: Seen, queue: Annotated[str | None, Query(pattern=NAME)] = None
    ) -> JSONResponse:
        return JSONResponse(await charts.hour(queue), headers={"Cache-Control": "no-store"})

    @r.get("/events")
    async def events(
        request: Request, session: Seen, after: Annotated[int | None, Query(ge=0)] = None
    ) -> StreamingResponse:
        """Change notices for open pages (type, job id, queue: nothing from payloads) after
        ``after`` (the page's cursor, then its last notice's id), until the session ends (a
        logout elsewhere stops a copied cookie's stream too)."""
        cookie = request.cookies.get(COOKIE)

        async def alive() -> bool:
            return await board.sessions.check(cookie) is not None

        return StreamingResponse(
            stream(tail, after, alive),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- queue ----------------------------------------------------------------------------
    async def queue_values(
        name: str, state: str | None, task: str | None, q: str, cursor: str | None
    ) -> dict[str, object]:
        st = JobState(state) if state else None
        task = task or None  # the page's own links send "task=" for no filter

        async def read() -> object:
            return await job_page(client, queue=name, state=st, task=task, text=q, cursor=cursor)

        # Every viewer of one filter shares a read a second (a search is read each time).
        key = f"{tail.cursor}\0jobs\0{name}\0{state}\0{task}\0{cursor}"
        found = await (shared.get(key, read) if not q else read())
        return {
            "queue": name,
            "paused": name in await paused(),
            "counts": {**dict.fromkeys(STATES, 0), **(await one_queue(name))},
            "states": STATES,
            "state": state or "",
            "task": task or "",
            "q": q,
            "page": found,
            "finished": sorted(s.value for s in FINISHED_STATES),
            "call": name.startswith(CALL_QUEUE_PREFIX),
        }

    StateQ = Annotated[str | None, Query(pattern="^(" + "|".join(STATES) + ")?$")]
    TaskQ = Annotated[str | None, Query(pattern="^([A-Za-z0-9_][A-Za-z0-9_.:-]{0,199})?$")]
    TextQ = Annotated[str, Query(max_length=200)]
    CursorQ = Annotated[str | None, Query(max_length=100)]

    @r.get("/queues/{name}", response_class=HTMLResponse)
    async def queue(
        name: Queue,
        request: Request,
        session: Seen,
        state: StateQ = None,
        task: TaskQ = None,
        q: TextQ = "",
        cursor: CursorQ = None,
    ) -> HTMLResponse:
        values = await queue_values(name, state, task, q, cursor)
        return board.page("queue.html", request, session, **values)

    @r.get("/parts/queues/{name}", response_class=HTMLResponse)
    async def queue_part(
        name: Queue,
        request: Request,
        session: Seen,
        state: StateQ = None,
        task: TaskQ = None,
        q: TextQ = "",
        cursor: CursorQ = None,
    ) -> HTMLResponse:
        values = await queue_values(name, state, task, q, cursor)
        return board.page("parts/jobs.html", request, session, **values)

    # -- job ------------------------------------------------------------------------------
    @r.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job(job_id: JobId, request: Request, session: Seen) -> HTMLResponse:
        return board.page("job.html", request, session, **await job_values(board, job_id))

    @r.get("/parts/jobs/{job_id}", response_class=HTMLResponse)
    async def job_part(job_id: JobId, request: Request, session: Seen) -> HTMLResponse:
        values = await job_values(board, job_id, live=True)
        return board.page("parts/job.html", request, session, **values)

    # -- schedules and workers --------------------------------------------------------------
    @r.get("/schedules", response_class=HTMLResponse)
    async def schedules(request: Request, session: Seen) -> HTMLResponse:
        rows = []
        for s in await client.schedules():
            last = await client.get_job(s.last_job_id) if s.last_job_id else None
            spec = parse_cron({"pattern": s.pattern, "timezone": s.timezone})
            upcoming = [s.next_run]
            for _ in range(2):
                upcoming.append(spec.next_after(upcoming[-1]))
            rows.append({"s": s, "last": last, "upcoming": upcoming})
        tasks = sorted(t.name for t in client.registry.tasks.values() if t.defaults.queued)
        return board.page("schedules.html", request, session, rows=rows, tasks=tasks)

    @r.get("/workers", response_class=HTMLResponse)
    async def workers(request: Request, session: Seen) -> HTMLResponse:
        ws, running, now = await worker_rows()
        return board.page("workers.html", request, session, workers=ws, running=running, now=now)

    return r
