"""SQLite backend: ``sqlite:///path/to.db``, one WAL file shared by processes on one machine."""

from workhorse.backends.sqlite.backend import SQLiteBackend, path_from_url

__all__ = ["SQLiteBackend", "path_from_url"]
