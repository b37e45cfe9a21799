"""PostgreSQL backend: ``postgresql://user@host/db?schema=workhorse``."""

from workhorse.backends.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
