"""Coordination primitives: set_if_absent and counter_add, with TTLs."""

from __future__ import annotations

import asyncio

from workhorse.backends import Backend

from .support import eventually


async def test_set_if_absent_first_caller_wins(backend: Backend, peer: Backend) -> None:
    assert await backend.set_if_absent("cron:nightly:2024-01-01T00:00", "w1") is True
    assert await peer.set_if_absent("cron:nightly:2024-01-01T00:00", "w2") is False
    assert await backend.set_if_absent("cron:nightly:2024-01-01T00:00", "w1") is False
    assert await peer.set_if_absent("cron:nightly:2024-01-02T00:00", "w2") is True


async def test_set_if_absent_concurrent_callers_one_winner(backend: Backend, peer: Backend) -> None:
    results = await asyncio.gather(
        *(b.set_if_absent("tick", f"w{i}", ttl=60) for i, b in enumerate([backend, peer] * 5))
    )
    assert sorted(results) == [False] * 9 + [True]


async def test_set_if_absent_ttl_expires(backend: Backend, peer: Backend) -> None:
    assert await backend.set_if_absent("lock", "a", ttl=0.4) is True
    assert await peer.set_if_absent("lock", "b", ttl=0.4) is False

    async def free() -> bool:
        return await peer.set_if_absent("lock", "b", ttl=60)

    await eventually(free, "the key to expire after its ttl")
    assert await backend.set_if_absent("lock", "c") is False


async def test_set_if_absent_without_ttl_stays(backend: Backend) -> None:
    assert await backend.set_if_absent("forever", "a") is True
    await asyncio.sleep(0.3)
    assert await backend.set_if_absent("forever", "b", ttl=0.1) is False


async def test_set_if_absent_unless_another_key_is_live(backend: Backend, peer: Backend) -> None:
    assert await backend.set_if_absent("run:1:step:a", "x", unless="run:1:end") is True
    assert await peer.set_if_absent("run:1:end", "cancelled") is True
    # Refused while the other key is live, whether or not the key itself is there.
    assert await backend.set_if_absent("run:1:step:b", "x", unless="run:1:end") is False
    assert await backend.kv_get("run:1:step:b") is None
    assert await backend.set_if_absent("run:1:step:a", "y", unless="run:1:end") is False
    assert await backend.kv_get("run:1:step:a") == "x"
    # An expired key no longer forbids.
    assert await backend.set_if_absent("run:2:end", "failed", ttl=0.3) is True

    async def free() -> bool:
        return await peer.set_if_absent("run:2:step:a", "x", unless="run:2:end")

    await eventually(free, "the forbidding key to expire")
    assert await backend.kv_scan("run:2:step:") == {"run:2:step:a": "x"}


async def test_counter_add_accumulates(backend: Backend, peer: Backend) -> None:
    assert await backend.counter_add("hits", 1) == 1
    assert await peer.counter_add("hits", 2) == 3
    assert await backend.counter_add("hits", -1) == 2
    assert await backend.counter_add("hits", 0) == 2
    assert await backend.counter_add("other", 5) == 5


async def test_counter_add_concurrent(backend: Backend, peer: Backend) -> None:
    results = await asyncio.gather(
        *(b.counter_add("join", 1, ttl=60) for b in [backend, peer] * 10)
    )
    assert sorted(results) == list(range(1, 21))


async def test_counter_ttl_starts_at_first_add_and_resets(backend: Backend) -> None:
    assert await backend.counter_add("rate", 1, ttl=0.3) == 1
    assert await backend.counter_add("rate", 2, ttl=0.3) == 3

    async def reset() -> bool:
        return await backend.counter_add("rate", 0) == 0

    await eventually(reset, "the counter to expire after its ttl")
    assert await backend.counter_add("rate", 5, ttl=60) == 5
    await asyncio.sleep(0.35)
    assert await backend.counter_add("rate", 1) == 6


async def test_counter_without_ttl_stays(backend: Backend) -> None:
    assert await backend.counter_add("total", 3) == 3
    await asyncio.sleep(0.3)
    assert await backend.counter_add("total", 1, ttl=0.1) == 4
