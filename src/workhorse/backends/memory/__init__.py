"""The reference backend: plain dicts and heaps in one process (see ``backend``)."""

from workhorse.backends.memory.backend import MemoryBackend

__all__ = ["MemoryBackend"]
