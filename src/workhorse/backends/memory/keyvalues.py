"""The memory backend's key-value store and counters, each key with an optional expiry.

Keys are also kept sorted, so a scan by prefix reads only the keys under that prefix
(flows scan a run's keys on a store holding every run's)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping


class KeyValues:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._kv: dict[str, tuple[str, float | None]] = {}
        self._counters: dict[str, tuple[int, float | None]] = {}
        self._sorted: list[str] = []  # the keys of _kv, in order

    def _store(self, key: str, value: str, expires: float | None) -> None:
        if key not in self._kv:
            bisect.insort(self._sorted, key)
        self._kv[key] = (value, expires)

    def _drop(self, key: str) -> None:
        del self._kv[key]
        del self._sorted[bisect.bisect_left(self._sorted, key)]

    def set_if_absent(self, key: str, value: str, ttl: float | None) -> bool:
        now = self._clock()
        if self._live(key, now) is not None:
            return False
        self._store(key, value, None if ttl is None else now + ttl)
        return True

    def _live(self, key: str, now: float) -> str | None:
        held = self._kv.get(key)
        if held is None:
            return None
        if held[1] is not None and held[1] <= now:
            self._drop(key)
            return None
        return held[0]

    def get(self, key: str) -> str | None:
        return self._live(key, self._clock())

    def put(self, key: str, value: str, ttl: float | None) -> None:
        self._store(key, value, None if ttl is None else self._clock() + ttl)

    def delete(self, key: str, value: str | None) -> bool:
        current = self._live(key, self._clock())
        if current is None or (value is not None and current != value):
            return False
        self._drop(key)
        return True

    def extend(self, held: Mapping[str, str], ttl: float) -> set[str]:
        now = self._clock()
        ours = {key for key, value in held.items() if self._live(key, now) == value}
        for key in ours:
            self._kv[key] = (held[key], now + ttl)
        return ours

    def scan(self, prefix: str) -> dict[str, str]:
        now = self._clock()
        keys = self._sorted
        start = bisect.bisect_left(keys, prefix)
        end = start
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        return {k: v for k in keys[start:end] if (v := self._live(k, now)) is not None}

    def add(self, key: str, n: int, ttl: float | None) -> int:
        now = self._clock()
        value, expires = self._counters.get(key, (0, None))
        if expires is not None and expires <= now:
            value, expires = 0, None
        if expires is None and ttl is not None:
            expires = now + ttl
        self._counters[key] = (value + n, expires)
        return value + n
