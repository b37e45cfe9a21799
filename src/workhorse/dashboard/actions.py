"""The actions (POST, each with the session's CSRF token; refused in read-only mode):
job retry (as it was, or with an edited payload) and cancel, queue pause, resume, bulk
retry, bulk cancel and purge, schedules, worker pause and resume.
Each answers with a redirect back to its page and a line saying what it did."""

import re
from typing import Annotated
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import RedirectResponse, Response

from workhorse.dashboard.board import Board, read_form
from workhorse.dashboard.pages import NAME, JobId, job_values
from workhorse.dashboard.session import Session
from workhorse.errors import PayloadError, WorkhorseError
from workhorse.http import CALL_QUEUE_PREFIX
from workhorse.job import FINISHED_STATES, JobKey, JobState

NAME_OR_EMPTY = r"^([A-Za-z0-9_][A-Za-z0-9_.:-]{0,199})?$"
BULK_LIMIT = 10_000  # jobs one click changes; the page says how many are left
_BATCH = 500


def action_routes(board: Board) -> APIRouter:
    r = APIRouter()
    client = board.client
    Acting = Annotated[Session, Depends(board.writer)]
    Queue = Annotated[str, Path(pattern=NAME)]

    async def field(request: Request, name: str, pattern: str = NAME_OR_EMPTY) -> str:
        value = (await read_form(request)).get(name, "").strip()
        if not re.match(pattern, value):
            raise HTTPException(422, f"{name} {value[:80]!r} is not a valid name")
        return value

    def back(path: str, done: str) -> RedirectResponse:
        board.shared.clear()
        return RedirectResponse(f"{board.prefix}{path}?done={quote(done)}", status_code=303)

    # -- jobs ---------------------------------------------------------------------------
    @r.post("/jobs/{job_id}/retry")
    async def retry(job_id: JobId, session: Acting) -> RedirectResponse:
        job = await client.get_job(job_id)
        if job is not None and job.queue.startswith(CALL_QUEUE_PREFIX):
            return back(f"/jobs/{job_id}", "not retried: an HTTP call's record; call again")
        ok = await client.retry(job_id)
        return back(f"/jobs/{job_id}", "queued again" if ok else "not retried: not finished")

    @r.post("/jobs/{job_id}/edit", response_model=None)
    async def edit(job_id: JobId, session: Acting, request: Request) -> Response:
        """Retry with a new payload, checked as an enqueue checks it; a refusal shows the
        job's page again with the reason beside the text as typed (422)."""
        job = await client.get_job(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        if job.queue.startswith(CALL_QUEUE_PREFIX):
            return back(f"/jobs/{job_id}", "not retried: an HTTP call's record; call again")
        text = (await read_form(request)).get("data", "")
        try:
            data = board.redact.restore(orjson.loads(text.strip() or "null"), job.data)
            ok = await client.retry(job_id, data, by=session.who)
        except (orjson.JSONDecodeError, PayloadError) as exc:
            why = f"not JSON: {exc}" if isinstance(exc, orjson.JSONDecodeError) else str(exc)
            values = {**await job_values(board, job_id), "edit_text": text, "edit_error": why}
            page = board.page("job.html", request, session, **values)
            page.status_code = 422
            return page
        if not ok:
            return back(f"/jobs/{job_id}", "not retried: it is no longer failed or cancelled")
        return back(f"/jobs/{job_id}", "payload changed and queued again")

    @r.post("/jobs/{job_id}/cancel")
    async def cancel(job_id: JobId, session: Acting) -> RedirectResponse:
        state = await client.cancel(job_id)
        if state is None:
            raise HTTPException(404, f"no job {job_id}")
        return back(f"/jobs/{job_id}", f"cancel asked: the job is {state}")

    # -- queues -------------------------------------------------------------------------
    @r.post("/queues/{name}/pause")
    async def pause(name: Queue, session: Acting) -> RedirectResponse:
        await client.pause(name)
        return back(f"/queues/{name}", "paused: workers claim nothing from it")

    @r.post("/queues/{name}/resume")
    async def resume(name: Queue, session: Acting) -> RedirectResponse:
        await client.resume(name)
        return back(f"/queues/{name}", "resumed")

    # -- workers ------------------------------------------------------------------------
    @r.post("/workers/{worker_id}/{verb}")
    async def control_worker(
        worker_id: Queue, verb: Annotated[str, Path(pattern="^(pause|resume)$")], session: Acting
    ) -> RedirectResponse:
        try:
            await (client.pause_worker if verb == "pause" else client.resume_worker)(worker_id)
        except WorkhorseError as exc:  # no such live worker (any more)
            return back("/workers", f"not done: {exc}")
        return back("/workers", f"{verb} asked: the worker follows within a few seconds")

    async def bulk(name: str, state: JobState, task: str, act: str) -> tuple[int, bool]:
        """Apply ``act`` to every job of the filter, a batch at a time, each read after the
        last job looked at (a keyset page: jobs the action left as they were are not read
        again, and the read costs no skip), up to BULK_LIMIT."""
        done = looked = 0
        after: JobKey | None = None
        while looked < BULK_LIMIT:
            batch = await client.jobs(
                queue=name, state=state, task=task or None, limit=_BATCH, after=after
            )
            for job in batch:
                changed = (
                    await client.retry(job.id) if act == "retry" else await client.cancel(job.id)
                )
                done += bool(changed)
            if batch:
                after = JobKey.of(batch[-1])
            looked += len(batch)
            if len(batch) < _BATCH:
                return done, False
        return done, True

    @r.post("/queues/{name}/retry-failed")
    async def retry_failed(name: Queue, session: Acting, request: Request) -> RedirectResponse:
        task = await field(request, "task")
        if name.startswith(CALL_QUEUE_PREFIX):  # no worker consumes a server's call queue
            return back(f"/queues/{name}", "not retried: HTTP call records; call again")
        n, more = await bulk(name, JobState.FAILED, task, "retry")
        left = "; more remain, retry again" if more else ""
        return back(f"/queues/{name}", f"{n} failed job(s) queued again{left}")

    @r.post("/queues/{name}/cancel-queued")
    async def cancel_queued(name: Queue, session: Acting, request: Request) -> RedirectResponse:
        task = await field(request, "task")
        n = 0
        more = False
        for state in (JobState.QUEUED, JobState.SCHEDULED):
            done, left = await bulk(name, state, task, "cancel")
            n, more = n + done, more or left
        left_note = "; more remain, cancel again" if more else ""
        return back(f"/queues/{name}", f"{n} waiting job(s) cancelled{left_note}")

    @r.post("/queues/{name}/purge")
    async def purge(name: Queue, session: Acting) -> RedirectResponse:
        n = await client.purge(states=FINISHED_STATES, keep_last=0, queue=name)
        return back(f"/queues/{name}", f"{n} finished job(s) deleted")

    # -- schedules ----------------------------------------------------------------------
    Sched = Annotated[str, Path(pattern=NAME)]

    @r.post("/schedules/{name}/run")
    async def run_schedule(name: Sched, session: Acting) -> RedirectResponse:
        for s in await client.schedules():
            if s.name == name:
                h = await client.enqueue(s.task, s.data)
                return back(f"/jobs/{h.id}", f"schedule {name} run now")
        raise HTTPException(404, f"no schedule {name}")

    @r.post("/schedules/{name}/remove")
    async def remove_schedule(name: Sched, session: Acting) -> RedirectResponse:
        ok = await client.remove_schedule(name)
        return back("/schedules", f"schedule {name} removed" if ok else f"no schedule {name}")

    @r.post("/schedules")
    async def add_schedule(session: Acting, request: Request) -> RedirectResponse:
        name = await field(request, "name", NAME)
        task = await field(request, "task", NAME)
        form = await read_form(request)
        cron = form.get("cron", "").strip()[:200]
        try:
            data = orjson.loads(form.get("data", "").strip() or "null")
        except orjson.JSONDecodeError:
            return back("/schedules", 'not added: data is not JSON (e.g. {"user": "ada"})')
        try:
            await client.add_schedule(name, task, cron, data)
        except WorkhorseError as exc:
            return back("/schedules", f"not added: {exc}")
        return back("/schedules", f"schedule {name} added")

    return r
