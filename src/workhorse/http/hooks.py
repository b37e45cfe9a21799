"""The REST routes of the durable hooks: every group's lag, its parked events (paged, with
their errors), replay and drop of one, and forgetting a group."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from workhorse.http.auth import Caller
from workhorse.http.errors import ApiError, ApiRoute
from workhorse.http.models import (
    Done,
    HooksOut,
    ParkedList,
    group_out,
    parked_out,
)
from workhorse.http.params import Name
from workhorse.http.state import Api

# A parked event's id is "<event id>:<hook name>"; a hook's name defaults to its qualname.
ParkedId = Annotated[str, Path(pattern=r"^[0-9]{1,40}:[^/]{1,300}$")]
Group = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,40}:[^/]{1,300}$")]


def _order(parked_id: str) -> tuple[int, str]:
    """A parked id's place in the list: events in log order, then hook names."""
    event, _, hook = parked_id.partition(":")
    return int(event), hook


def hooks_routes(api: Api) -> APIRouter:
    r = APIRouter(route_class=ApiRoute)
    hooks = api.hooks
    Read = Annotated[Caller, Depends(api.reader)]
    Write = Annotated[Caller, Depends(api.writer)]

    async def known_group(group: str) -> str:
        if group not in await hooks.groups():
            known = ", ".join(await hooks.groups()) or "none yet"
            raise ApiError(
                404,
                "NotFound",
                f"no hook group {group!r} in the store (groups: {known}); a listener "
                f"creates its group when it starts",
            )
        return group

    @r.get("/hooks", response_model=HooksOut)
    async def status(caller: Read) -> HooksOut:
        """Every hook group in the store: its lag (events behind, age of the oldest unread),
        listeners, parked events and losses; and the hooks this server can replay."""
        return HooksOut(
            groups=[group_out(s) for s in await hooks.status()],
            subscribed=sorted(h.name for h in hooks.set),
        )

    @r.get("/hooks/{group}/parked", response_model=ParkedList)
    async def parked(
        group: Name,
        caller: Read,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ParkedList:
        """The group's parked events, oldest event first, with the error each failed on
        (the traceback only to a caller with a token); page on with ``?cursor=``."""
        items = await hooks.parked(await known_group(group))
        if cursor is not None:
            after = _order(cursor)
            items = [p for p in items if _order(p.id) > after]
        page = items[:limit]
        more = len(items) > limit
        return ParkedList(
            parked=[parked_out(p, caller.known) for p in page],
            next_cursor=page[-1].id if more else None,
        )

    @r.post("/hooks/parked/{parked_id}/replay", response_model=Done)
    async def replay(parked_id: ParkedId, caller: Write, group: Group = None) -> Done:
        """Call the parked event's hook again in this server (which must subscribe it): on
        success the event leaves the parked list; on failure it stays with the new error."""
        name = group or api.client.settings.hook_group
        item = await hooks.get(parked_id, name)
        if item is None:
            raise ApiError(404, "NotFound", f"no parked event {parked_id} in hook group {name!r}")
        if hooks.set.get(item.hook) is None:
            known = ", ".join(sorted(h.name for h in hooks.set)) or "none"
            raise ApiError(
                409,
                "NotSubscribed",
                f"hook {item.hook!r} is not subscribed by the app this server runs "
                f"(subscribed: {known}): serve the app that defines it, or replay there "
                f"with app.hooks.replay()",
            )
        try:
            await hooks.replay(parked_id, name)
        except Exception as exc:
            raise ApiError(
                409,
                "ReplayFailed",
                f"hook {item.hook!r} failed again ({type(exc).__name__}: {exc}); the event "
                f"stays parked with the new error",
            ) from exc
        return Done(ok=True)

    @r.delete("/hooks/parked/{parked_id}", response_model=Done)
    async def drop(parked_id: ParkedId, caller: Write, group: Group = None) -> Done:
        """Forget a parked event without calling its hook."""
        name = group or api.client.settings.hook_group
        if not await hooks.drop(parked_id, name):
            raise ApiError(404, "NotFound", f"no parked event {parked_id} in hook group {name!r}")
        return Done(ok=True)

    @r.delete("/hooks/{group}", response_model=Done)
    async def forget(group: Name, caller: Write) -> Done:
        """Delete a group no longer used: its cursors, parked events and its hold on the
        event log's retention."""
        n = await hooks.forget(await known_group(group))
        return Done(ok=True, deleted=n)

    return r
