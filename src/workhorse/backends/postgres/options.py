"""The PostgreSQL URL's options: workhorse's own, the schema name rule, libpq's."""

from __future__ import annotations

import re

from psycopg import pq

from workhorse.errors import ConfigError

# A schema name is inlined into SQL text, so only these are accepted.
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
OWN_PARAMS = ("schema", "migrate", "pool_min", "pool_max", "max_events", "call_timeout")


def int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 1:
        raise ConfigError(f"URL parameter {name}={raw!r} must be a positive integer")
    return value


def check_libpq(query: dict[str, str]) -> None:
    """Refuse an option neither workhorse nor libpq reads, now rather than at connect."""
    libpq = {o.keyword.decode() for o in pq.Conninfo.get_defaults()}
    unknown = sorted(set(query) - libpq)
    if unknown:
        raise ConfigError(
            f"unknown PostgreSQL URL option(s) {unknown}; valid: {', '.join(OWN_PARAMS)} "
            "and libpq's connection parameters (sslmode, application_name, ...; see "
            "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS)"
        )
