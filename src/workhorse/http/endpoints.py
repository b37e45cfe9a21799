"""The generated routes: one per ``http`` or ``both`` task, answering with its result."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response

from workhorse.errors import PayloadError
from workhorse.http.auth import Caller
from workhorse.http.errors import ERRORS, ApiError, ApiRoute, fast_route
from workhorse.http.fast import PASS, json_body
from workhorse.http.state import Api, Bearer
from workhorse.job import NewJob
from workhorse.task import Task

# How a failed call's error type maps to a status; anything else is a 500.
_STATUS = {
    "TimeoutError": 504,
    "RateLimited": 429,
    "Cancelled": 409,
    "workhorse.errors.PayloadError": 422,
}


def task_routes(api: Api) -> APIRouter:
    router = APIRouter(route_class=ApiRoute, tags=["task endpoints"])
    for task in api.client.registry.tasks.values():
        if task.defaults.http is not None:
            _add(router, api, task)
    return router


def _add(router: APIRouter, api: Api, task: Task[Any, Any]) -> None:
    spec = task.defaults.http
    assert spec is not None
    path = spec.path or f"{api.prefix}/tasks/{task.name}/call"

    async def gate(request: Request) -> Caller:
        return await api.auth.route(request, spec.auth)

    async def token_gate(request: Request, _: Bearer) -> Caller:
        """The same gate, documented in the OpenAPI document as taking a bearer token."""
        return await api.auth.route(request, spec.auth)

    params = [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        inspect.Parameter(
            "caller",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Caller,
            default=Depends(token_gate if spec.auth in (True, "read", "write") else gate),
        ),
    ]
    with_body = task.takes_data and spec.method != "GET"
    if with_body:
        params.append(
            inspect.Parameter(
                "body", inspect.Parameter.KEYWORD_ONLY, annotation=task.data_type, default=Body()
            )
        )

    async def endpoint(request: Request, caller: Caller, body: Any = None) -> Response:
        if not task.takes_data:
            data = None
        elif with_body:
            data = body
        else:  # GET: the query string is the payload (a refusal of it is a 422)
            data = dict(request.query_params)
        return await respond(api, caller, task, data)

    async def fast(request: Request) -> Response | None:
        """A JSON body the task takes as it is: no FastAPI parameter resolution. Checked
        before the gate, as FastAPI does, so a refusal goes to FastAPI untouched."""
        data = await json_body(request) if with_body else PASS
        if data is PASS:
            return None
        try:
            new = api.calls.record(task, data)
        except PayloadError:  # FastAPI's validation answers it with the fields
            return None
        return await respond(api, await gate(request), task, data, new)

    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    endpoint.__name__ = f"call_{task.name}".replace("-", "_").replace(".", "_")
    router.add_api_route(
        path,
        endpoint,
        methods=[spec.method],
        summary=f"Call task {task.name} and answer with its result",
        description=(task.fn.__doc__ or "").strip() or None,
        response_model=None if task.result_type is Any else task.result_type,
        responses=ERRORS,
        operation_id=f"call_{task.name}",
        route_class_override=fast_route(fast),
    )


async def respond(
    api: Api, caller: Caller, task: Task[Any, Any], data: Any, new: NewJob | None = None
) -> Response:
    """Run the call (``new``, else one of ``task`` on ``data``) and answer; a failure
    frees a webhook's delivery id for its sender's retry."""
    try:
        return await answer(api, new or api.calls.record(task, data), caller)
    except BaseException as exc:
        if not isinstance(exc, ApiError) or exc.status >= 500:
            await api.auth.forget(caller)  # a webhook sender's retry must run again
        raise


async def answer(api: Api, new: NewJob, caller: Caller) -> Response:
    job_id, outcome = await api.calls.call(new)
    headers = {"Workhorse-Job-Id": job_id}
    if outcome.kind == "completed":
        return Response(outcome.result, media_type="application/json", headers=headers)
    error = outcome.error or {"type": "Error", "message": "the call failed"}
    kind = str(error.get("type", "Error"))
    raise ApiError(
        _STATUS.get(kind, 500),
        kind.rsplit(".", 1)[-1],
        str(error.get("message", "")),
        headers,
        job_id=job_id,
        traceback=(error.get("traceback") or None) if caller.known else None,
    )
