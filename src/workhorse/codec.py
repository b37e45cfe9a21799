"""JSON in and out, never pickle. Sizes are checked on the encoded bytes."""

from __future__ import annotations

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
    return raw
