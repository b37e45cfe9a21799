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


async def test_counter_add_many_adds_in_order(backend: Backend, peer: Backend) -> None:
    assert await peer.counter_add("a", 10) == 10
    got = await backend.counter_add_many([("a", 1, None), ("b", 2, None), ("c", -3, None)])
    assert got == [11, 2, -3]
    assert await peer.counter_add_many([("c", 0, None), ("b", 0, None), ("a", 0, None)]) == [
        -3,
        2,
        11,
    ]
    assert await peer.counter_add("b", 1) == 3  # the same counters as counter_add's


async def test_counter_add_many_a_key_twice_sees_its_first_add(backend: Backend) -> None:
    assert await backend.counter_add("a", 5) == 5
    items = [("a", 1, None), ("b", 1, None), ("a", 2, None), ("a", 0, None), ("a", -4, None)]
    assert await backend.counter_add_many(items) == [6, 1, 8, 8, 4]
    assert await backend.counter_add_many([("n", 1, None)] * 300) == list(range(1, 301))
    assert await backend.counter_add("a", 0) == 4


async def test_counter_add_many_sets_each_ttl_as_counter_add(backend: Backend) -> None:
    assert await backend.counter_add("kept", 1, ttl=60) == 1
    items: list[tuple[str, int, float | None]] = [
        ("short", 1, 0.3),
        ("short", 1, 60),  # a live counter keeps its expiry
        ("late", 1, None),
        ("late", 1, 0.3),  # a counter without one takes the first given
        ("lasting", 1, None),
        ("kept", 1, 0.3),
    ]
    assert await backend.counter_add_many(items) == [1, 2, 1, 2, 1, 2]

    async def expired() -> bool:
        now = await backend.counter_add_many([("short", 0, None), ("late", 0, None)])
        return now == [0, 0]

    await eventually(expired, "the counters to expire after their ttl")
    await asyncio.sleep(0.35)
    assert await backend.counter_add_many([("lasting", 0, None), ("kept", 0, None)]) == [1, 2]
    # An expired counter starts again from its first add, with that add's ttl.
    assert await backend.counter_add_many([("short", 5, 60), ("short", 1, 0.1)]) == [5, 6]
    await asyncio.sleep(0.35)
    assert await backend.counter_add("short", 0) == 6


async def test_counter_add_many_of_nothing(backend: Backend) -> None:
    assert await backend.counter_add_many([]) == []


async def test_counter_add_many_concurrent(backend: Backend, peer: Backend) -> None:
    keys = ["k0", "k1", "k2", "k3"]
    # Each batch takes the keys in another order; together they add 1 to each 20 times.
    batches = [
        [(keys[(i + j) % 4] if i % 2 else keys[(i - j) % 4], 1, 60.0) for j in range(4)]
        for i in range(20)
    ]
    got = await asyncio.gather(
        *((backend if i % 2 else peer).counter_add_many(b) for i, b in enumerate(batches))
    )
    seen: dict[str, list[int]] = {k: [] for k in keys}
    for batch, values in zip(batches, got, strict=True):
        for (key, _, _), v in zip(batch, values, strict=True):
            seen[key].append(v)
    assert {k: sorted(v) for k, v in seen.items()} == {k: list(range(1, 21)) for k in keys}
