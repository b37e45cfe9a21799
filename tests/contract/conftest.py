"""Fixtures of the contract suite on top of the shared ``backend`` fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from workhorse.backends import Backend


@pytest.fixture
async def peer(backend: Backend, backend_factory: Callable[[], Backend]) -> AsyncIterator[Backend]:
    """A second backend object on the same store: another process's view of it.

    The memory backend has one object per store, so there it is ``backend`` itself."""
    other = backend_factory()
    if other is backend:
        yield other
        return
    await other.open()
    try:
        yield other
    finally:
        await other.close()
