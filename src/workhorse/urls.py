"""Backend URLs as users see them in messages: never with their password."""

from __future__ import annotations

from collections.abc import Collection

from workhorse.errors import ConfigError


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``; anything else is left as it is."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@", 0, _first(rest, "/?#"))
    if at < 0:
        # An unencoded '/' in the password ends the host part early.
        at = rest.rfind("@", 0, _first(rest, "?#"))
    user, colon, _ = rest[:at].partition(":")
    if at < 0 or not colon:
        return url
    return f"{scheme}{sep}{user}:***@{rest[at + 1 :]}"


def _first(text: str, chars: str) -> int:
    return min((i for i in map(text.find, chars) if i >= 0), default=len(text))


def check_options(given: Collection[str], known: Collection[str], store: str) -> None:
    """Refuse a URL option the backend would not read (a typo would be silently ignored)."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(sorted(known)) or "none"
        raise ConfigError(f"unknown {store} URL option(s) {unknown}; valid: {valid}")
