"""``POST /tasks/{name}/jobs``: enqueue a job, answer 202 with its id (or 200 with the
finished job under ``?wait=``). The route's FastAPI handler and its fast path share this."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from workhorse.errors import RunTimeout
from workhorse.http.auth import Caller
from workhorse.http.calls import CALL_QUEUE_PREFIX
from workhorse.http.errors import ApiError
from workhorse.http.fast import PASS, json_body
from workhorse.http.idempotency import enqueue_once
from workhorse.http.models import Enqueued, job_out
from workhorse.http.params import MAX_WAIT, NAME_PATTERN
from workhorse.http.state import Api

_NAME = re.compile(NAME_PATTERN)
# The one query the fast path reads itself: ?wait=SECONDS in plain digits.
_WAIT = re.compile(rb"wait=([0-9]{1,2}(?:\.[0-9]{1,6})?)")


async def enqueue_job(
    api: Api,
    name: str,
    caller: Caller,
    body: Any,
    options: dict[str, Any],
    wait: float | None,
    key: str | None,
) -> Response:
    client = api.client
    task = client.registry.get_task(name)
    if not task.defaults.queued:
        raise ApiError(
            409,
            "NotQueued",
            f"task {name!r} has mode='http': call it at its own route, not enqueue it",
        )
    headers: dict[str, str] = {}
    if key is not None:
        out = await enqueue_once(client, task, body, options, key)
        if out.replayed:
            headers["Idempotent-Replayed"] = "true"
    elif task.defaults.on_duplicate == "raise":  # the client's refusal names the job
        h = await client.enqueue(task, body, **options)
        out = Enqueued(id=h.id, task=h.task, queue=h.queue, status=h.status, state=h.state)
    else:
        new = client.new_job(task, body, options)
        res = await api.enqueues.enqueue(new)
        status = "replaced" if res.replaced else "created" if res.created else "duplicate"
        if status == "duplicate" and task.defaults.on_duplicate == "skip":
            status = "skipped"
        out = Enqueued(id=res.id, task=task.name, queue=new.queue, status=status, state=res.state)
    headers["Location"] = api.location(out.id)
    if wait:
        try:
            job = await client.wait(out.id, wait)
        except RunTimeout:
            pass
        else:
            return JSONResponse(
                job_out(job, CALL_QUEUE_PREFIX, caller.known).model_dump(mode="json"),
                headers=headers,
            )
    return Response(out.model_dump_json(), 202, headers, "application/json")


async def fast_enqueue(api: Api, request: Request) -> Response | None:
    """The common request (a JSON body, no query but ``?wait=``) without FastAPI's
    parameter resolution; anything else, FastAPI's."""
    name = request.path_params.get("name")
    query = request.scope.get("query_string", b"")
    wait = _WAIT.fullmatch(query) if query else None
    if not isinstance(name, str) or not _NAME.fullmatch(name) or (query and wait is None):
        return None
    seconds = float(wait[1]) if wait else None
    if seconds is not None and seconds > MAX_WAIT:
        return None
    body = await json_body(request)
    if body is PASS:
        return None
    caller = await api.auth.require(request, "write")
    return await enqueue_job(
        api, name, caller, body, {}, seconds, request.headers.get("idempotency-key")
    )
