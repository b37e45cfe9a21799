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
        if (where := not_json(value)) is not None:
            raise _refusal(what, where) from None
        raise PayloadError(
            f"{what} is not JSON-serialisable ({exc}); pass dicts, lists, strings, numbers, "
            "booleans, None or a pydantic model"
        ) from None
    if len(raw) > limit:
        raise too_large(what, len(raw), limit)
    # orjson writes NaN and the infinities as null, which would lose data silently. Only a
    # payload whose JSON holds a null can hide one, so most never pay for the walk.
    if b"null" in raw and value is not None and (where := not_json(value)) is not None:
        raise _refusal(what, where)
    return raw


def too_large(what: str, size: int, limit: int) -> PayloadError:
    return PayloadError(
        f"{what} is {size:,} bytes, over the {limit:,}-byte cap; store large data "
        "elsewhere and pass a reference, or raise WORKHORSE_MAX_PAYLOAD"
    )


def check_json(value: Any, what: str) -> None:
    """Refuse plain data that JSON cannot carry as it is (NaN, infinities, sets, bytes),
    naming where it sits. For a payload about to be converted by a type adapter, which
    would otherwise turn NaN into null, a set into a list and bytes into a string."""
    if (where := not_json(value)) is not None:
        raise _refusal(what, where)


def _refusal(what: str, where: tuple[str, str]) -> PayloadError:
    return PayloadError(
        f"{what} is not JSON-serialisable: it holds {where[1]} at "
        f"{where[0] or 'its top level'}, which JSON cannot carry; send None, a string, a "
        "finite number or a list instead"
    )


_NOT_JSON = (set, frozenset, bytes, bytearray, memoryview, complex)


def not_json(value: Any, path: str = "") -> tuple[str, str] | None:
    """The path and a description of the first value JSON cannot carry as it is. Models
    are left to pydantic: their fields declare how they become JSON."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, repr(value))
    if isinstance(value, _NOT_JSON):
        return (path, f"a {type(value).__name__}")
    if isinstance(value, dict):
        for key, item in value.items():
            if (found := not_json(item, f"{path}[{key!r}]")) is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (found := not_json(item, f"{path}[{index}]")) is not None:
                return found
    return None
