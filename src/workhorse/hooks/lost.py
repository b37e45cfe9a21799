"""Events a hook group lost: the log's retention (``max_events``) trimmed them before the
group read them. Recorded in the group's state and logged, never passed over silently."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from workhorse import codec
from workhorse.hooks.group import Group

log = logging.getLogger("workhorse.hooks")


@dataclass(slots=True)
class Lost:
    incidents: int  # times a listener found its cursor behind the retained log
    events_at_most: int | None  # None: the store's ids do not count events (Redis)
    last_at: float | None


def key(group: Group) -> str:
    return group.base + "lost"


async def check(group: Group, cursor: int) -> None:
    """Record a loss if the oldest retained event is past ``cursor`` (every event up to
    the cursor is gone, so unread ones after it may be gone too)."""
    first = await group.client.events(0, 1)
    if not first or first[0].id <= cursor + 1:
        return
    oldest = first[0].id
    # SQLite and memory number events 1, 2, 3...: the gap bounds the loss; Redis ids are
    # times (ms * 10**6 + seq) and PostgreSQL's positions (xid, id), which count nothing.
    counted = group.client.backend.capabilities.counted_event_ids
    gap = oldest - cursor - 1 if counted else None
    backend = await group.client.store()
    raw = await backend.kv_get(key(group))
    state: dict[str, Any] = (
        codec.loads(raw) if raw else {"incidents": 0, "events_at_most": 0 if counted else None}
    )
    state["incidents"] += 1
    if gap is None or state["events_at_most"] is None:
        state["events_at_most"] = None
    else:
        state["events_at_most"] += gap
    state["last_at"] = time.time()
    await backend.kv_set(key(group), codec.dumps(state).decode())
    log.error(
        "hook group %r lost events: the log's retention trimmed %s events after its cursor "
        "%d before it read them (oldest kept: %d). Keep listeners running, or raise the "
        "store's max_events (a URL option)",
        group.name,
        "unknown" if gap is None else f"up to {gap}",
        cursor,
        oldest,
    )


async def read(group: Group) -> Lost:
    backend = await group.client.store()
    raw = await backend.kv_get(key(group))
    if raw is None:
        return Lost(0, 0, None)
    v = codec.loads(raw)
    return Lost(int(v["incidents"]), v["events_at_most"], v.get("last_at"))
