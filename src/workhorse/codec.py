"""JSON in and out, never pickle. Sizes are checked on the encoded bytes."""

from __future__ import annotations

import math
from typing import Any

import orjson

from workhorse.errors import PayloadError

_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTS)


def dumps_sorted(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTS | orjson.OPT_SORT_KEYS)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


# orjson refuses to encode deeper than this (and to decode deeper than 1024 levels).
MAX_DEPTH = 254


def encode_payload(value: Any, limit: int, what: str = "payload") -> bytes:
    """Encode ``value`` or raise a PayloadError that names the problem and the fix."""
    try:
        raw = orjson.dumps(value)
    except TypeError as exc:
        if "Recursion limit" in str(exc):
            raise PayloadError(
                f"{what} is nested more than {MAX_DEPTH} levels deep (or refers to itself); "
                "flatten it, or store it elsewhere and pass a reference"
            ) from None
        raise PayloadError(
            f"{what} is not JSON-serialisable ({exc}); pass dicts, lists, strings, numbers, "
            "booleans, None or a pydantic model"
        ) from None
    if len(raw) > limit:
        raise PayloadError(
            f"{what} is {len(raw):,} bytes, over the {limit:,}-byte cap; store large data "
            "elsewhere and pass a reference, or raise WORKHORSE_MAX_PAYLOAD"
        )
    # orjson writes NaN and the infinities as null, which would lose data silently. Only a
    # payload whose JSON holds a null can hide one, so most never pay for the walk.
    if b"null" in raw and (where := _non_finite(value, "")) is not None:
        raise PayloadError(
            f"{what} holds {where[1]} at {where[0] or 'its top level'}, which JSON cannot "
            "carry; send None, a string, or a finite number instead"
        )
    return raw


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The path and value of the first NaN or infinity in a JSON-like value."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, dict):
        for key, item in value.items():
            if (found := _non_finite(item, f"{path}[{key!r}]")) is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (found := _non_finite(item, f"{path}[{index}]")) is not None:
                return found
    return None
