"""A run started once per key: a repeat (concurrent, after a lost reply, or a step's
attempt that runs again) gets the first start's run."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from workhorse import codec
from workhorse.backends import Backend
from workhorse.errors import ConfigError
from workhorse.flows import keys

# Seconds a start's key is remembered (as an enqueue's Idempotency-Key).
KEY_TTL = 86_400.0
# Seconds a key is held while its run starts: a starter killed meanwhile frees it soon.
STARTING_TTL = 30.0


class KeyReused(ConfigError):
    """A start's key was used before with different data."""


class KeyInFlight(ConfigError):
    """The first start with this key has not finished starting its run."""


async def start_once(
    backend: Backend,
    start: Callable[[str, Any], Awaitable[str]],
    flow: str,
    data: Any,
    key: str,
    scope: str,
    same_data: bool = True,
) -> tuple[str, bool]:
    """Start a run of ``flow`` once per ``key`` in ``scope`` (``start`` starts one);
    returns its id and whether an earlier start made it. ``same_data``: a repeat with
    other data raises KeyReused (a caller's key); without, it gets the first run, as a
    step's emit run again does."""
    if not isinstance(key, str) or not key or len(key) > 1000:
        raise ConfigError(f"a start's key is a string of 1-1000 characters, got {key!r}")
    mark = keys.PREFIX + "once:" + hashlib.sha256(f"{scope}\0{flow}\0{key}".encode()).hexdigest()
    fp = hashlib.sha256(codec.dumps_sorted(data)).hexdigest() if same_data else ""
    while True:
        if await backend.set_if_absent(
            mark, codec.dumps({"fp": fp, "id": None}).decode(), STARTING_TTL
        ):
            try:
                run_id = await start(flow, data)
            except BaseException:
                await backend.kv_delete(mark)  # nothing was started: the key is free again
                raise
            await backend.kv_set(mark, codec.dumps({"fp": fp, "id": run_id}).decode(), KEY_TTL)
            return run_id, False
        for _ in range(100):  # the first start is under way: its run id comes soon
            seen = await backend.kv_get(mark)
            if seen is None:
                break  # its starter failed: the key is free again
            first = codec.loads(seen)
            if same_data and first["fp"] != fp:
                raise KeyReused(
                    f"key {key!r} started a run of flow {flow!r} with "
                    "other data; use a new key for new data"
                )
            if first["id"] is not None:
                return first["id"], True
            await asyncio.sleep(0.05)
        else:
            raise KeyInFlight(
                f"the first start of flow {flow!r} with this key is still starting its run; "
                "retry shortly"
            )
