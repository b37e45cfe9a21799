"""Errors as the API answers them: ``{"error": {"type", "message"}}`` with a status, never
a traceback unless the caller holds a token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from workhorse.errors import (
    BackendError,
    ConfigError,
    DuplicateJob,
    PayloadError,
    UnknownTaskError,
    WorkhorseError,
)


class ErrorDetail(BaseModel):
    type: str
    message: str
    fields: list[dict[str, Any]] | None = None  # a 422's field errors
    job_id: str | None = None  # a failed call's job record
    traceback: str | None = None  # only to a caller with a token


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """Raised by a route to answer ``status`` with an error body."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> JSONResponse:
        detail = {"type": self.type, "message": self.message}
        detail.update({k: v for k, v in self.extra.items() if v is not None})
        return JSONResponse({"error": detail}, self.status, headers=self.headers)


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic's errors as plain JSON: where, what, and the message (never the input)."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type"), "msg": e.get("msg")}
        for e in errors
    ]


def invalid(errors: Any, what: str = "request") -> ApiError:
    fields = field_errors(errors)
    where = ", ".join(".".join(f["loc"]) or "body" for f in fields[:5])
    return ApiError(422, "ValidationError", f"invalid {what}: check {where}", fields=fields)


# The error statuses every route documents, so its OpenAPI answers match what it sends.
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 422, 429, 500, 503, 504)
}


Handler = Callable[[Request], Coroutine[Any, Any, Response]]
# A hot route's own handling of the common request: an answer, or None to hand the request
# to FastAPI's full handling (which also answers every validation error).
Fast = Callable[[Request], Awaitable[Response | None]]


def guard(handler: Handler) -> Handler:
    """``handler`` answering every refusal in the one error shape."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except RequestValidationError as exc:
            return invalid(exc.errors()).response()
        except WorkhorseError as exc:
            return from_workhorse(exc).response()
        except HTTPException as exc:
            return ApiError(exc.status_code, "HTTPError", str(exc.detail), exc.headers).response()

    return route


class ApiRoute(APIRoute):
    """A route that answers every refusal in the one error shape, also when mounted in a
    user's FastAPI app (whose exception handlers are the user's)."""

    def get_route_handler(self) -> Handler:
        return guard(super().get_route_handler())


def fast_route(fast: Fast) -> type[ApiRoute]:
    """A route class that tries ``fast`` first: its OpenAPI entry and every request
    ``fast`` passes on (None) stay FastAPI's, so both answer alike."""

    class FastRoute(ApiRoute):
        def get_route_handler(self) -> Handler:
            full = APIRoute.get_route_handler(self)

            async def quick(request: Request) -> Response:
                answer = await fast(request)
                return await full(request) if answer is None else answer

            return guard(quick)

    return FastRoute


def from_workhorse(exc: WorkhorseError) -> ApiError:
    """A refusal of the client's as an answer: its message already names the fix."""
    kind = type(exc).__name__
    if isinstance(exc, UnknownTaskError):
        return ApiError(404, kind, str(exc))
    if isinstance(exc, PayloadError):
        return ApiError(422, kind, str(exc))
    if isinstance(exc, DuplicateJob):
        return ApiError(409, kind, str(exc), job_id=exc.existing.id)
    if isinstance(exc, ConfigError):
        return ApiError(400, kind, str(exc))
    if isinstance(exc, BackendError):
        return ApiError(503, kind, "the store cannot be reached; try again")
    return ApiError(500, kind, str(exc))
