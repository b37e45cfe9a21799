"""Backends are chosen by URL; each module is imported only when its scheme is used."""

from __future__ import annotations

from workhorse.backends.base import JOB_EVENTS, Backend, Capabilities, RenewResult
from workhorse.errors import ConfigError
from workhorse.job import Claim
from workhorse.urls import redact

SCHEMES = {
    "memory": ("workhorse.backends.memory", "MemoryBackend", None),
    "sqlite": ("workhorse.backends.sqlite", "SQLiteBackend", None),
    "redis": ("workhorse.backends.redis", "RedisBackend", "redis"),
    "rediss": ("workhorse.backends.redis", "RedisBackend", "redis"),
    "redis+cluster": ("workhorse.backends.redis", "RedisBackend", "redis"),
    "rediss+cluster": ("workhorse.backends.redis", "RedisBackend", "redis"),
    "postgresql": ("workhorse.backends.postgres", "PostgresBackend", "postgres"),
    "postgres": ("workhorse.backends.postgres", "PostgresBackend", "postgres"),
}


def backend_from_url(url: str) -> Backend:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported backend URL {redact(url)!r}; use one of: memory://, "
            "sqlite:///path/to.db, redis://host:6379/0, rediss://host:6380/0 (TLS), "
            "redis+cluster://host:7000,host:7001 (rediss+cluster:// with TLS), "
            "postgresql://user@host/db"
        )
    module_name, class_name, extra = SCHEMES[scheme]
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        raise ConfigError(
            f"the {scheme} backend needs its extra: pip install 'workhorse[{extra}]' ({exc})"
        ) from None
    cls: type[Backend] = getattr(module, class_name)
    return cls(url)  # type: ignore[call-arg]


__all__ = ["JOB_EVENTS", "Backend", "Capabilities", "Claim", "RenewResult", "backend_from_url"]
