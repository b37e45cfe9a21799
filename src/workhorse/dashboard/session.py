"""Who is looking: a login with an API token becomes a signed session cookie (HttpOnly,
SameSite=Strict) and every action carries a CSRF token derived from that session. Each
session is also kept in the store (a key per session, under a hash of its id, expiring
with it): logging out deletes the key, so a copied cookie stops working everywhere."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

import orjson

from workhorse.client import Client
from workhorse.http.auth import parse_tokens

COOKIE = "workhorse_session"
OPEN = "open"  # the session of a dashboard mounted without a login (insecure)
KEY_PREFIX = "dashboard:session:"


@dataclass(frozen=True, slots=True)
class Session:
    """``scope`` is the token's (read or write); ``can_write`` also weighs read-only mode."""

    scope: str
    nonce: str
    can_write: bool
    csrf: str

    @property
    def who(self) -> str:
        """How a change names this session (its token's scope and the start of its id;
        neither lets anyone act as it)."""
        if self.nonce == OPEN:
            return "dashboard (no login)"
        return f"dashboard ({self.scope} token, session {self.nonce[:8]})"


class Sessions:
    """Signs and checks session cookies. The key comes from the API tokens, so every
    process serving one app agrees, and changing the tokens ends every session."""

    def __init__(
        self,
        raw_tokens: str | None,
        client: Client,
        *,
        insecure: bool,
        read_only: bool,
        lifetime: float,
    ) -> None:
        self.tokens = parse_tokens(raw_tokens)
        self.client = client
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

    async def login(self, given: str) -> str | None:
        """A cookie value for a valid token, else None (every token compared: constant work)."""
        found = None
        for scope, known in self.tokens:
            if hmac.compare_digest(given.encode(), known):
                found = scope
        if found is None:
            return None
        nonce = secrets.token_hex(16)
        store = await self.client.store()
        await store.kv_set(self._key(nonce), found, self.lifetime)
        body = orjson.dumps({"s": found, "e": time.time() + self.lifetime, "n": nonce})
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._sign(payload)}"

    async def check(self, cookie: str | None) -> Session | None:
        """The session of a cookie signed with this app's key, not expired and not ended
        by a logout (one store read)."""
        if self.insecure:
            return self._session("write", OPEN)
        found = self._signed(cookie)
        if found is None:
            return None
        store = await self.client.store()
        return found if await store.kv_get(self._key(found.nonce)) is not None else None

    async def logout(self, cookie: str | None) -> None:
        """End the cookie's session on the server, for whoever else holds a copy of it."""
        found = None if self.insecure else self._signed(cookie)
        if found is not None:
            await (await self.client.store()).kv_delete(self._key(found.nonce))

    def _key(self, nonce: str) -> str:
        return KEY_PREFIX + hashlib.sha256(nonce.encode()).hexdigest()[:32]

    def _signed(self, cookie: str | None) -> Session | None:
        """The session a cookie names, when its signature holds and it has not expired."""
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
