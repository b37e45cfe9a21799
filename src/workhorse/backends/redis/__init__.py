"""The Redis backend (standalone and Cluster) as a package; see backend.py."""

from workhorse.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
