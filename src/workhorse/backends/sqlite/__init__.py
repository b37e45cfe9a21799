"""SQLite backend: ``sqlite:///path/to.db``, one WAL file shared by processes on one machine."""

from workhorse.backends.sqlite.backend import SQLiteBackend
from workhorse.backends.sqlite.connection import path_from_url
from workhorse.backends.sqlite.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQLiteBackend", "path_from_url"]
