"""A record that cannot be decoded ends failed, with its bytes kept: the same error shape
on every backend (the Redis scripts build it in Lua, in _prelude.lua)."""

from __future__ import annotations

import base64
from typing import Any

QUARANTINED = "Quarantined"
RAW_CAP = 4096  # bytes of each bad field kept in the error


def quarantine_error(
    raw: dict[str, bytes], reasons: dict[str, str], previous: Any
) -> dict[str, Any]:
    """The error of a record quarantined as failed: what did not decode, and its bytes."""
    what = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    return {
        "type": QUARANTINED,
        "message": (
            f"record could not be decoded: {what}. It was quarantined as failed; the raw "
            f"bytes are in error['raw'] (base64, the first {RAW_CAP} bytes of each field)"
        ),
        "raw": {k: base64.b64encode(v[:RAW_CAP]).decode() for k, v in raw.items()},
        "raw_size": {k: len(v) for k, v in raw.items()},
        "previous": previous,
        "traceback": "",
    }


def quarantined(error: Any) -> bool:
    return isinstance(error, dict) and error.get("type") == QUARANTINED
