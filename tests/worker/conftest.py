"""The worker on the memory backend with a fake clock: the store's time (leases, backoff,
delays) moves only when a test says so; handler timeouts and the worker's own loops use
real, short times."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from workhorse import Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock=clock)


@pytest.fixture
async def app(memory: MemoryBackend) -> AsyncIterator[Workhorse]:
    a = Workhorse(backend=memory, poll_interval=0.05)
    await a.open()
    yield a
    await a.close()
