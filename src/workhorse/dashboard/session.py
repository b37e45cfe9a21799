"""Who is looking: a login with an API token becomes a signed session cookie (HttpOnly,
SameSite=Strict) and every action carries a CSRF token derived from that session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

import orjson

from workhorse.http.auth import parse_tokens

COOKIE = "workhorse_session"


@dataclass(frozen=True, slots=True)
class Session:
    """``scope`` is the token's (read or write); ``can_write`` also weighs read-only mode."""

    scope: str
    nonce: str
    can_write: bool
    csrf: str


class Sessions:
    """Signs and checks session cookies. The key comes from the API tokens, so every
    process serving one app agrees, and changing the tokens ends every session."""

    def __init__(
        self, raw_tokens: str | None, *, insecure: bool, read_only: bool, lifetime: float
    ) -> None:
        self.tokens = parse_tokens(raw_tokens)
        self.insecure = insecure
        self.read_only = read_only
        self.lifetime = lifetime
        material = b"\0".join(token for _, token in self.tokens)
        # Without tokens, a per-process key: nothing else needs to check these cookies.
        seed = material or os.urandom(32)
        self.key = hashlib.sha256(b"workhorse-dashboard-session\0" + seed).digest()

    @property
    def configured(self) -> bool:
        return bool(self.tokens)

    def login(self, given: str) -> str | None:
        """A cookie value for a valid token, else None (every token compared: constant work)."""
        found = None
        for scope, known in self.tokens:
            if hmac.compare_digest(given.encode(), known):
                found = scope
        if found is None:
            return None
        body = orjson.dumps(
            {"s": found, "e": time.time() + self.lifetime, "n": secrets.token_hex(16)}
        )
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._sign(payload)}"

    def check(self, cookie: str | None) -> Session | None:
        """The session of a cookie this process signed and that has not expired."""
        if self.insecure:
            return self._session("write", "open")
        if not cookie or "." not in cookie:
            return None
        payload, _, sig = cookie.rpartition(".")
        if not hmac.compare_digest(sig, self._sign(payload)):
            return None
        try:
            value = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            scope, expires, nonce = str(value["s"]), float(value["e"]), str(value["n"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        if expires < time.time() or scope not in ("read", "write"):
            return None
        return self._session(scope, nonce)

    def _session(self, scope: str, nonce: str) -> Session:
        csrf = hmac.new(self.key, b"csrf\0" + nonce.encode(), hashlib.sha256).hexdigest()[:32]
        return Session(scope, nonce, scope == "write" and not self.read_only, csrf)

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()
