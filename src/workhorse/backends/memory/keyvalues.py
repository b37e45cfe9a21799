"""The memory backend's key-value store and counters, each key with an optional expiry.

Keys are also kept sorted, so a scan by prefix reads only the keys under that prefix
(flows scan a run's keys on a store holding every run's)."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator, Mapping

_BLOCK = 512  # keys per block of SortedKeys, at most twice that before a split
_SPLIT = 2 * _BLOCK


class SortedKeys:
    """Strings in order, in blocks: an insert or a delete moves the keys of one block, not
    every key after it (a flat list did: 7 µs per insert and delete at 14,000 keys, what
    2,000 started flow runs hold, once per flow step)."""

    __slots__ = ("_blocks", "_maxes")

    def __init__(self) -> None:
        self._blocks: list[list[str]] = []
        self._maxes: list[str] = []  # each block's last key

    def add(self, key: str) -> None:
        """Insert ``key`` (not already held)."""
        blocks, maxes = self._blocks, self._maxes
        if not blocks:
            blocks.append([key])
            maxes.append(key)
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):  # after every key: the last block's new end
            i -= 1
            block = blocks[i]
            block.append(key)
            maxes[i] = key
        else:
            block = blocks[i]
            insort(block, key)
        if len(block) > _SPLIT:
            blocks[i : i + 1] = [block[:_BLOCK], block[_BLOCK:]]
            maxes[i : i + 1] = [block[_BLOCK - 1], block[-1]]

    def remove(self, key: str) -> None:
        """Remove ``key`` (held)."""
        blocks, maxes = self._blocks, self._maxes
        i = bisect_left(maxes, key)
        block = blocks[i]
        del block[bisect_left(block, key)]
        if not block:
            del blocks[i], maxes[i]
        else:
            maxes[i] = block[-1]

    def starting(self, prefix: str) -> Iterator[str]:
        """The keys from the first one not below ``prefix`` on, in order."""
        blocks = self._blocks
        i = bisect_left(self._maxes, prefix)
        if i < len(blocks):
            block = blocks[i]
            yield from block[bisect_left(block, prefix) :]
            for block in blocks[i + 1 :]:
                yield from block

    def below(self, bound: str | None) -> Iterator[str]:
        """The keys under ``bound`` (all with None), highest first."""
        blocks = self._blocks
        i = len(blocks) - 1 if bound is None else bisect_left(self._maxes, bound)
        if i == len(blocks):
            i -= 1
        for j in range(i, -1, -1):
            block = blocks[j]
            end = len(block) if bound is None else bisect_left(block, bound)
            yield from reversed(block[:end])


def _past(prefix: str) -> str | None:
    """The least string above every one starting with ``prefix`` (None: no such string)."""
    while prefix and prefix[-1] == chr(0x10FFFF):
        prefix = prefix[:-1]
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None


class KeyValues:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._kv: dict[str, tuple[str, float | None]] = {}
        self._counters: dict[str, tuple[int, float | None]] = {}
        self._sorted = SortedKeys()  # the keys of _kv, in order

    def _store(self, key: str, value: str, expires: float | None) -> None:
        if key not in self._kv:
            self._sorted.add(key)
        self._kv[key] = (value, expires)

    def _drop(self, key: str) -> None:
        del self._kv[key]
        self._sorted.remove(key)

    def set_if_absent(self, key: str, value: str, ttl: float | None) -> bool:
        now = self._clock()
        if self._live(key, now) is not None:
            return False
        self._store(key, value, None if ttl is None else now + ttl)
        return True

    def claim(self, key: str, value: str, unless: str | None) -> bool | None:
        """``set_if_absent`` of ``key`` (no ttl) unless ``unless`` is live: None when it
        is, and nothing is set (a claim written with its job, once per flow step: one
        clock read, and no look-up of an expired key's that ``_live`` does not make)."""
        kv = self._kv
        now = self._clock()
        if unless is not None and unless in kv and self._live(unless, now) is not None:
            return None
        if key in kv and self._live(key, now) is not None:
            return False
        self._sorted.add(key)  # absent: ``_live`` dropped it if it had expired
        kv[key] = (value, None)
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

    def scan(
        self,
        prefix: str,
        limit: int | None = None,
        reverse: bool = False,
        after: str | None = None,
    ) -> dict[str, str]:
        now = self._clock()
        kv = self._kv
        if limit == 0:
            return {}
        if reverse:
            bound = _past(prefix)
            if after is not None and (bound is None or after < bound):
                bound = after
            keys = self._sorted.below(bound)
        else:
            start = prefix if after is None or after < prefix else after
            keys = self._sorted.starting(start)
        under, expired = [], []
        for key in keys:
            if not key.startswith(prefix):
                break
            if key == after:
                continue
            expires = kv[key][1]
            if expires is not None and expires <= now:
                expired.append(key)
                continue
            under.append(key)
            if len(under) == limit:
                break
        # Dropped after the walk: a drop changes the blocks walked.
        for key in expired:
            self._drop(key)
        return {k: kv[k][0] for k in under}

    def add(self, key: str, n: int, ttl: float | None) -> int:
        now = self._clock()
        value, expires = self._counters.get(key, (0, None))
        if expires is not None and expires <= now:
            value, expires = 0, None
        if expires is None and ttl is not None:
            expires = now + ttl
        self._counters[key] = (value + n, expires)
        return value + n
