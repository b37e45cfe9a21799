"""Hook groups in the dashboard: the overview's lag panel, the hooks page with the parked
events, and their actions (replay, drop, forget a group), all through ``app.hooks``."""

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from workhorse.client import HasClient, client_of
from workhorse.dashboard.board import Board, read_form
from workhorse.dashboard.live import Tail
from workhorse.dashboard.session import Session
from workhorse.errors import WorkhorseError
from workhorse.hooks import GroupStatus, Hooks, HookSet

GROUP = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"  # a hook group's name has no ':'
LagReader = Callable[[], Awaitable[list[GroupStatus]]]
PARKED_MAX = 500  # characters of a parked event's id ("<event id>:<hook name>")


def hooks_of(app: HasClient) -> Hooks:
    """The app's hooks (its subscriptions make replay possible), else none subscribed."""
    found = getattr(app, "hooks", None)
    return found if isinstance(found, Hooks) else Hooks(client_of(app), HookSet())


def lag_reader(board: Board, tail: Tail, hooks: Hooks) -> LagReader:
    async def status() -> list[GroupStatus]:
        # Each group's lag is a read of its unread log: one read a second serves every page.
        return list(await board.shared.get(f"{tail.cursor}\0hooks", hooks.status))

    return status


def hook_routes(board: Board, hooks: Hooks, status: LagReader) -> APIRouter:
    r = APIRouter()
    Seen = Annotated[Session, Depends(board.session)]
    Acting = Annotated[Session, Depends(board.writer)]
    Group = Annotated[str, Path(pattern=GROUP)]

    @r.get("/parts/hooks", response_class=HTMLResponse)
    async def hooks_part(request: Request, session: Seen) -> HTMLResponse:
        return board.page("parts/hooks.html", request, session, groups=await status())

    @r.get("/hooks", response_class=HTMLResponse)
    async def hooks_page(request: Request, session: Seen) -> HTMLResponse:
        groups = await status()
        parked = {g.group: await hooks.parked(g.group) for g in groups}
        subscribed = {h.name for h in hooks.set}
        return board.page(
            "hooks.html",
            request,
            session,
            groups=groups,
            parked=parked,
            events={
                p.id: board.redact(p.event.to_dict()) for items in parked.values() for p in items
            },
            subscribed=subscribed,
        )

    def back(done: str) -> RedirectResponse:
        board.shared.clear()
        return RedirectResponse(f"{board.prefix}/hooks?done={quote(done)}", status_code=303)

    async def parked_id(request: Request) -> str:
        value = (await read_form(request)).get("parked", "").strip()
        if not value or len(value) > PARKED_MAX:
            raise HTTPException(422, "parked: give the parked event's id, as the page shows it")
        return value

    @r.post("/hooks/{group}/replay")
    async def replay(group: Group, session: Acting, request: Request) -> RedirectResponse:
        pid = await parked_id(request)
        try:
            await hooks.replay(pid, group)
        except WorkhorseError as exc:  # not parked (any more), or its hook not subscribed here
            return back(f"not replayed: {exc}")
        except Exception as exc:  # the hook failed again: it stays parked with this error
            return back(f"replay failed, still parked: {type(exc).__name__}: {exc}")
        return back(f"{pid} replayed: its hook returned, the event left the parked list")

    @r.post("/hooks/{group}/drop")
    async def drop(group: Group, session: Acting, request: Request) -> RedirectResponse:
        pid = await parked_id(request)
        ok = await hooks.drop(pid, group)
        return back(f"{pid} dropped without a call" if ok else f"no parked event {pid}")

    @r.post("/hooks/{group}/forget")
    async def forget(group: Group, session: Acting) -> RedirectResponse:
        n = await hooks.forget(group)
        return back(f"hook group {group} forgotten ({n} keys deleted)")

    return r
