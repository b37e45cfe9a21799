"""Reading a hot route's request without FastAPI's parameter resolution: each helper
returns what FastAPI would, or ``PASS`` when FastAPI must read the request itself."""

from __future__ import annotations

from typing import Any, Final

import orjson
from fastapi import Request

PASS: Final = object()  # the request is not the common case: FastAPI handles it


async def json_body(request: Request) -> Any:
    """The JSON body, or PASS: no body, another content type, or JSON that orjson
    refuses (FastAPI then answers its own 422 or reads the body its way)."""
    kind = request.headers.get("content-type", "")
    if kind.partition(";")[0].strip().lower() != "application/json":
        return PASS
    raw = await request.body()
    if not raw:
        return PASS
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return PASS
