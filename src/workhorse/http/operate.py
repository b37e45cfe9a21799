"""The operator's routes of the REST API: queues (counts, pause, resume, purge),
schedules (list, add, remove, run now) and workers."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from workhorse.errors import ConfigError
from workhorse.http.auth import Caller
from workhorse.http.errors import ApiError, ApiRoute
from workhorse.http.models import (
    Done,
    Enqueued,
    QueueOut,
    ScheduleIn,
    ScheduleOut,
    WorkerOut,
    schedule_out,
    worker_out,
)
from workhorse.http.params import Name
from workhorse.http.state import Api
from workhorse.job import FINISHED_STATES, JobState
from workhorse.settings import check_name


def operate_routes(api: Api) -> APIRouter:
    r = APIRouter(route_class=ApiRoute)
    client = api.client
    Read = Annotated[Caller, Depends(api.reader)]
    Write = Annotated[Caller, Depends(api.writer)]

    # -- queues --------------------------------------------------------------------------
    @r.get("/queues", response_model=list[QueueOut])
    async def queues(caller: Read) -> list[QueueOut]:
        counts = await client.counts()
        paused = await client.paused()
        names = sorted(set(counts) | paused)
        empty = {s.value: 0 for s in JobState}
        return [QueueOut(name=q, paused=q in paused, counts=counts.get(q, empty)) for q in names]

    @r.post("/queues/{queue}/pause", response_model=Done)
    async def pause(queue: Name, caller: Write) -> Done:
        await client.pause(queue)
        return Done(ok=True)

    @r.post("/queues/{queue}/resume", response_model=Done)
    async def resume(queue: Name, caller: Write) -> Done:
        await client.resume(queue)
        return Done(ok=True)

    @r.delete("/queues/{queue}/jobs", response_model=Done)
    async def purge(
        queue: Name,
        caller: Write,
        state: Annotated[list[JobState] | None, Query()] = None,
        older_than: Annotated[float | None, Query(ge=0, le=100 * 365 * 86_400)] = None,
        keep: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    ) -> Done:
        """Delete the queue's finished jobs (``state``: completed, failed, cancelled; all
        three by default) older than ``older_than`` seconds and/or beyond the newest
        ``keep`` (``keep=0``: every one)."""
        states = set(state or FINISHED_STATES)
        if states - FINISHED_STATES:
            raise ApiError(
                422,
                "ValidationError",
                "purge deletes finished jobs only: state must be completed, failed or cancelled",
            )
        if older_than is None and keep is None:
            raise ApiError(
                400,
                "ValidationError",
                "say what to delete: ?older_than=SECONDS and/or ?keep=N (keep=0 deletes "
                "every finished job)",
            )
        n = await client.purge(
            states=states, older_than=older_than, keep_last=keep, queue=check_name(queue, "queue")
        )
        return Done(ok=True, deleted=n)

    # -- schedules -----------------------------------------------------------------------
    @r.get("/schedules", response_model=list[ScheduleOut])
    async def schedules(caller: Read) -> list[ScheduleOut]:
        return [schedule_out(s) for s in await client.schedules()]

    @r.put("/schedules/{name}", response_model=ScheduleOut)
    async def add_schedule(name: Name, spec: ScheduleIn, caller: Write) -> ScheduleOut:
        """Add or replace a schedule; every worker picks it up within seconds."""
        cron: dict[str, Any] = {"pattern": spec.cron}
        if spec.timezone is not None:
            cron["timezone"] = spec.timezone
        await client.add_schedule(name, spec.task, cron, spec.data)
        for s in await client.schedules():
            if s.name == name:
                return schedule_out(s)
        raise ApiError(409, "Conflict", f"schedule {name} was removed meanwhile")

    @r.delete("/schedules/{name}", response_model=Done)
    async def remove_schedule(name: Name, caller: Write) -> Done:
        if not await client.remove_schedule(name):
            raise ApiError(404, "NotFound", f"no schedule {name}")
        return Done(ok=True)

    @r.post("/schedules/{name}/run", status_code=202, response_model=Enqueued)
    async def run_schedule(name: Name, caller: Write, response: Response) -> Enqueued:
        """Enqueue the schedule's task with its data now, outside its cron."""
        for s in await client.schedules():
            if s.name == name:
                h = await client.enqueue(s.task, s.data)
                response.headers["Location"] = api.location(h.id)
                return Enqueued(id=h.id, task=h.task, queue=h.queue, status=h.status, state=h.state)
        raise ApiError(404, "NotFound", f"no schedule {name}")

    # -- workers ------------------------------------------------------------------
    @r.get("/workers", response_model=list[WorkerOut])
    async def workers(caller: Read) -> list[WorkerOut]:
        return [worker_out(w) for w in await client.workers()]

    @r.post("/workers/{worker_id}/pause", response_model=Done)
    async def pause_worker(worker_id: Name, caller: Write) -> Done:
        """Ask a live worker to claim nothing more; its running jobs go on. It follows
        within its heartbeat interval, and GET /workers shows ``paused`` after its next beat."""
        await control_worker(worker_id, "pause")
        return Done(ok=True)

    @r.post("/workers/{worker_id}/resume", response_model=Done)
    async def resume_worker(worker_id: Name, caller: Write) -> Done:
        """Let a paused worker (``--paused``, or paused here) claim again, within half a
        second."""
        await control_worker(worker_id, "resume")
        return Done(ok=True)

    async def control_worker(worker_id: str, asked: str) -> None:
        try:
            await (client.pause_worker if asked == "pause" else client.resume_worker)(worker_id)
        except ConfigError:
            # The client's message lists every live worker's id: only the request's is shown.
            raise ApiError(404, "NotFound", f"no live worker {worker_id}") from None

    return r
