"""What every dashboard route shares: the client, sessions, redaction and templates."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse

from workhorse.client import Client
from workhorse.dashboard.live import Tail
from workhorse.dashboard.redact import Redactor
from workhorse.dashboard.session import COOKIE, Session, Sessions
from workhorse.dashboard.shared import Shared

MAX_FORM = 16_384  # bytes: the dashboard's forms are a few short fields (and one payload)
AFTER = "workhorse.after"  # the request's event log cursor, taken before its reads


async def read_form(request: Request, limit: int = MAX_FORM) -> dict[str, str]:
    """A URL-encoded form's fields (the first of each name), read once per request; no
    multipart, so no extra dependency."""
    cached = request.scope.get("workhorse.form")
    if cached is not None:
        return dict(cached)
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(413, f"form larger than {limit} bytes")
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    request.scope["workhorse.form"] = fields
    return dict(fields)


def same_origin(request: Request) -> None:
    """A browser's POST from another site names that site in Origin: refuse it, whatever
    cookie or token it carries (requests without Origin are not a browser's cross-site)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise HTTPException(403, "cross-site request refused: open the dashboard itself")


def _when(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return str(value.strftime("%Y-%m-%d %H:%M:%S UTC"))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@dataclass(slots=True)
class Board:
    client: Client
    sessions: Sessions
    redact: Redactor
    prefix: str
    tail: Tail
    shared: Shared = field(default_factory=Shared)
    env: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("workhorse.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["when"] = _when
        self.env.filters["pretty"] = _pretty
        self.env.filters["q"] = lambda v: quote(str(v), safe="")
        self.env.filters["redact"] = self.redact

    async def session(self, request: Request) -> Session:
        """The visitor's session, or a redirect to the login page."""
        found = await self.sessions.check(request.cookies.get(COOKIE))
        if found is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            # A redirect as an HTTP error: it works in any app, with no handler to install.
            raise HTTPException(
                303,
                "log in first",
                headers={"Location": f"{self.prefix}/login?next={quote(target, safe='')}"},
            )
        await self._mark(request)
        return found

    async def writer(self, request: Request) -> Session:
        """A session that may act, with the CSRF token of this session; else 401/403."""
        same_origin(request)
        found = await self.sessions.check(request.cookies.get(COOKIE))
        if found is None:
            raise HTTPException(401, "log in first: your session is missing or expired")
        if not found.can_write:
            why = "read-only mode" if self.sessions.read_only else "a read token"
            raise HTTPException(403, f"this dashboard session cannot act ({why})")
        # An action's form may carry an edited payload: URL-encoding can triple its bytes.
        form = await read_form(request, MAX_FORM + 3 * self.client.max_payload)
        given = request.headers.get("x-csrf-token") or form.get("csrf", "")
        if given != found.csrf:
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and retry")
        await self._mark(request)
        return found

    async def _mark(self, request: Request) -> None:
        """The event log's cursor before the route reads anything (a dependency runs first):
        the page's stream starts there, so a change made while it renders is not missed."""
        request.scope[AFTER] = await self.tail.advance()

    def page(
        self, name: str, request: Request, session: Session | None, **values: Any
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(
            p=self.prefix,
            session=session,
            request=request,
            notice=request.query_params.get("done"),
            after=request.scope.get(AFTER),
            **values,
        )
        return HTMLResponse(
            html,
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "same-origin",
                "X-Content-Type-Options": "nosniff",
            },
        )
