"""The dashboard: server-rendered pages (Jinja2, htmx, uPlot; no JavaScript build) over the
public client, live through the store's event log, behind a token login.

``router(app)`` is an APIRouter to include in your FastAPI app beside
``workhorse.http.router(app)``; ``workhorse serve`` mounts both. See docs/dashboard.md."""

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from workhorse.client import HasClient, client_of
from workhorse.dashboard.actions import action_routes
from workhorse.dashboard.board import Board, read_form, same_origin
from workhorse.dashboard.charts import Charts
from workhorse.dashboard.flows import flow_routes, flows_of
from workhorse.dashboard.hooks import hook_routes, hooks_of, lag_reader
from workhorse.dashboard.live import Tail
from workhorse.dashboard.pages import page_routes
from workhorse.dashboard.redact import Redactor
from workhorse.dashboard.session import COOKIE, Sessions

__all__ = ["router"]

_STATIC = {
    "htmx.min.js": "text/javascript",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


def router(
    app: HasClient,
    *,
    prefix: str | None = None,
    insecure: bool = False,
    read_only: bool | None = None,
) -> APIRouter:
    """The dashboard under ``prefix`` (the ``dashboard_prefix`` setting, ``/admin``).

    Log in with a token of the API's (``api_tokens``); a read token or ``read_only``
    (the ``dashboard_read_only`` setting) shows no action and refuses every write.
    ``insecure``: no login (a trusted network only)."""
    client = client_of(app)
    s = client.settings
    raw = None if s.api_tokens is None else s.api_tokens.get_secret_value()
    tail = Tail(client, min(s.poll_interval, 0.5))
    board = Board(
        client,
        Sessions(
            raw,
            client,
            insecure=insecure,
            read_only=s.dashboard_read_only if read_only is None else read_only,
            lifetime=s.dashboard_session,
        ),
        Redactor(s.dashboard_redact),
        prefix or s.dashboard_prefix,
        tail,
    )

    out = APIRouter(prefix=board.prefix, include_in_schema=False)
    out.include_router(_login_routes(board))
    hooks = hooks_of(app)
    lag = lag_reader(board, tail, hooks)
    out.include_router(page_routes(board, tail, Charts(client), lag))
    out.include_router(action_routes(board))
    out.include_router(hook_routes(board, hooks, lag))
    out.include_router(flow_routes(board, flows_of(app)))
    return out


def _login_routes(board: Board) -> APIRouter:
    r = APIRouter()
    sessions = board.sessions

    def safe_next(target: str) -> str:
        ok = target.startswith(board.prefix + "/") and not target.startswith("//")
        return target if ok and "\\" not in target else board.prefix + "/"

    @r.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "") -> HTMLResponse:
        return board.page(
            "login.html",
            request,
            None,
            next=safe_next(next),
            configured=sessions.configured,
            refused=False,
        )

    @r.post("/login", response_model=None)
    async def login(request: Request) -> Response:
        same_origin(request)
        form = await read_form(request)
        token, next = form.get("token", "")[:500], form.get("next", "")
        cookie = await sessions.login(token.strip()) if token else None
        if cookie is None:
            page = board.page(
                "login.html",
                request,
                None,
                next=safe_next(next),
                configured=sessions.configured,
                refused=True,
            )
            page.status_code = 401
            return page
        out = RedirectResponse(safe_next(next), status_code=303)
        out.set_cookie(
            COOKIE,
            cookie,
            max_age=int(sessions.lifetime),
            path=board.prefix,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return out

    @r.post("/logout")
    async def logout(request: Request) -> RedirectResponse:
        """Ends the session in the store too: a copy of the cookie stops working."""
        same_origin(request)
        await sessions.logout(request.cookies.get(COOKIE))
        out = RedirectResponse(board.prefix + "/login", status_code=303)
        out.delete_cookie(COOKIE, path=board.prefix)
        return out

    @r.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in _STATIC:
            return Response("no such file", status_code=404)
        body = resources.files("workhorse.dashboard").joinpath("static", name).read_bytes()
        return Response(
            body, media_type=_STATIC[name], headers={"Cache-Control": "public, max-age=3600"}
        )

    return r
