"""PostgreSQL backend: ``postgresql://user@host/db?schema=workhorse``."""

from workhorse.backends.postgres.backend import PostgresBackend, safe_url

__all__ = ["PostgresBackend", "safe_url"]
