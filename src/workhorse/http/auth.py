"""Who may call: bearer tokens with a scope (read or write), a function of the request,
or a Standard Webhooks signature. Tokens and secrets never appear in errors or logs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request

from workhorse.client import Client
from workhorse.errors import ConfigError
from workhorse.http.errors import ApiError

Scope = Literal["read", "write"]
AuthCheck = Callable[[Request], Any]  # returns "read", "write", True (write) or a false value
SCOPES = ("read", "write")
_BEARER = {"WWW-Authenticate": 'Bearer realm="workhorse"'}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the request came from: ``scope`` is what it may do; ``known`` is False for an
    open route's anonymous caller (who gets no traceback)."""

    scope: str
    known: bool
    via_check: bool = False  # admitted by the app's auth function, not a token
    delivery: tuple[str, str] | None = None  # a webhook's dedupe mark: (key, value)


ANONYMOUS = Caller("open", False)


def _cross_site(request: Request) -> bool:
    """A browser says so in Sec-Fetch-Site; older ones only send an Origin to compare."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "cross-site"
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] != host


def parse_tokens(raw: str | None) -> list[tuple[str, bytes]]:
    """``"write:tok1,read:tok2"`` -> [(scope, token)]; a bad entry names the format."""
    out: list[tuple[str, bytes]] = []
    for n, entry in enumerate((raw or "").split(","), 1):
        entry = entry.strip()
        if not entry:
            continue
        scope, sep, token = entry.partition(":")
        if not sep or scope not in SCOPES or len(token) < 8:
            raise ConfigError(
                f"api_tokens entry {n} is not SCOPE:TOKEN with scope read or write and a "
                "token of at least 8 characters (e.g. WORKHORSE_API_TOKENS=write:<token>)"
            )
        out.append((scope, token.encode()))
    return out


def parse_secrets(raw: str | None) -> list[bytes]:
    """Standard Webhooks secrets: ``whsec_<base64>`` (the key is the decoded bytes) or raw."""
    keys = []
    for entry in (raw or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith("whsec_"):
            try:
                keys.append(base64.b64decode(entry[6:], validate=True))
            except binascii.Error:
                raise ConfigError(
                    "a webhook_secrets entry starts with whsec_ but the rest is not base64"
                ) from None
        else:
            keys.append(entry.encode())
    return keys


class Auth:
    """The API's gate. ``insecure``: every route is open (``workhorse serve --insecure``)."""

    def __init__(
        self, client: Client, *, insecure: bool = False, check: AuthCheck | None = None
    ) -> None:
        s = client.settings
        self.client = client
        self.tokens = parse_tokens(
            None if s.api_tokens is None else s.api_tokens.get_secret_value()
        )
        self.secrets = parse_secrets(
            None if s.webhook_secrets is None else s.webhook_secrets.get_secret_value()
        )
        self.tolerance = s.webhook_tolerance
        self.open_reads = s.api_open_reads
        self.insecure = insecure
        self.check = check

    @property
    def configured(self) -> bool:
        """Whether any caller can authenticate (a token or a check is set)."""
        return bool(self.tokens) or self.check is not None

    async def require(self, request: Request, scope: Scope) -> Caller:
        """The caller, if it may do ``scope``; else 401 (who are you) or 403 (not that)."""
        if self.insecure or (scope == "read" and self.open_reads):
            caller = await self._identify(request)
            return caller or ANONYMOUS
        caller = await self._identify(request)
        if caller is None:
            if not self.configured:
                raise ApiError(
                    401,
                    "Unauthorized",
                    "no API token is configured, so this route refuses every caller: set "
                    "WORKHORSE_API_TOKENS=write:<token> (and send Authorization: Bearer "
                    "<token>), or serve with --insecure on a trusted network",
                    _BEARER,
                )
            raise ApiError(
                401,
                "Unauthorized",
                f"this route needs a bearer token with scope {scope!r}: send "
                "Authorization: Bearer <token>",
                _BEARER,
            )
        if scope == "write" and caller.via_check and _cross_site(request):
            raise ApiError(
                403,
                "Forbidden",
                "a state change from another site is refused for a caller your auth function "
                "admitted (a cookie may ride along): call from the same site, or send a "
                "bearer token",
            )
        if scope == "write" and caller.scope != "write":
            raise ApiError(
                403,
                "Forbidden",
                "this token has scope 'read'; this route changes state and needs a token "
                "with scope 'write'",
            )
        return caller

    async def _identify(self, request: Request) -> Caller | None:
        header = request.headers.get("authorization")
        if header is not None and self.tokens:
            kind, _, given = header.partition(" ")
            if kind.lower() != "bearer" or not given.strip():
                raise ApiError(
                    401,
                    "Unauthorized",
                    "the Authorization header must be 'Bearer <token>'",
                    _BEARER,
                )
            token = given.strip().encode()
            found = None
            for scope, known in self.tokens:  # compare with every token: constant work
                if hmac.compare_digest(token, known):
                    found = scope
            if found is None:
                raise ApiError(401, "Unauthorized", "the bearer token is not valid", _BEARER)
            return Caller(found, True)
        if self.check is not None:
            verdict = self.check(request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict in SCOPES:
                return Caller(str(verdict), True, via_check=True)
            if verdict is True:
                return Caller("write", True, via_check=True)
        return None

    async def route(self, request: Request, spec: Any) -> Caller:
        """The gate of a task's own endpoint: its ``http={"auth": ...}``."""
        if self.insecure or spec is False:
            return await self._identify(request) or ANONYMOUS
        if spec is True or spec in SCOPES:
            return await self.require(request, "write" if spec is True else spec)
        if spec == "webhook":
            return Caller("webhook", False, delivery=await self.verify_webhook(request))
        verdict = spec(request)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if not verdict:
            raise ApiError(403, "Forbidden", "this route's auth function refused the request")
        return Caller("custom", True)

    async def verify_webhook(self, request: Request) -> tuple[str, str]:
        """A Standard Webhooks signature over ``id.timestamp.body``, a timestamp inside the
        tolerance, and a delivery id not seen before (kept twice the tolerance). Returns
        the delivery's mark, which ``forget`` frees when the handler fails."""
        if not self.secrets:
            raise ApiError(
                401,
                "Unauthorized",
                "this route takes signed webhooks, but no secret is configured: set "
                "WORKHORSE_WEBHOOK_SECRETS=whsec_<base64>",
            )
        h = request.headers
        wid, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
        if not wid or not ts or not sigs:
            raise ApiError(
                401,
                "Unauthorized",
                "a signed webhook needs the webhook-id, webhook-timestamp and "
                "webhook-signature headers",
            )
        if len(wid) > 200 or not ts.isdigit():
            raise ApiError(401, "Unauthorized", "webhook-id or webhook-timestamp is malformed")
        body = await request.body()
        signed = f"{wid}.{ts}.".encode() + body
        wanted = [
            base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()) for key in self.secrets
        ]
        ok = False
        for entry in sigs.split():
            version, _, sig = entry.partition(",")
            if version == "v1":
                for want in wanted:  # every pair compared: constant work
                    ok |= hmac.compare_digest(sig.encode(), want)
        if not ok:
            raise ApiError(401, "Unauthorized", "the webhook signature does not match")
        backend = await self.client.store()
        now = await backend.now()
        if abs(now - int(ts)) > self.tolerance:
            raise ApiError(
                401,
                "Unauthorized",
                f"the webhook timestamp is more than {self.tolerance:g}s from now "
                "(expired or from the future)",
            )
        mark = (f"webhook:{wid}", ts)
        if not await backend.set_if_absent(*mark, self.tolerance * 2):
            raise ApiError(
                409, "WebhookReplayed", "this webhook-id was already delivered; it is not run twice"
            )
        return mark

    async def forget(self, caller: Caller) -> None:
        """Free a failed delivery's id, so the sender's retry of it runs."""
        if caller.delivery is not None:
            await self.client.backend.kv_delete(*caller.delivery)
