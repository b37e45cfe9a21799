"""The memory store's sorted keys (blocks, so a write moves one block) hold the same keys
in the same order as a sorted list, and a prefix scan reads the same keys."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from workhorse.backends.memory import keyvalues
from workhorse.backends.memory.keyvalues import KeyValues, SortedKeys

KEYS = st.text(alphabet="abc:", min_size=0, max_size=6)


def held(keys: SortedKeys) -> list[str]:
    return list(keys.starting(""))


@given(st.lists(st.tuples(st.booleans(), KEYS), max_size=300), KEYS)
@settings(max_examples=200)
def test_blocks_hold_what_a_sorted_list_holds(ops: list[tuple[bool, str]], prefix: str) -> None:
    old = keyvalues._BLOCK
    keyvalues._BLOCK = 2  # tiny blocks: splits and emptied blocks on every few writes
    try:
        keys, model = SortedKeys(), set[str]()
        for add, key in ops:
            if add and key not in model:
                keys.add(key)
                model.add(key)
            elif not add and key in model:
                keys.remove(key)
                model.discard(key)
            assert held(keys) == sorted(model)
        assert list(keys.starting(prefix)) == [k for k in sorted(model) if k >= prefix]
    finally:
        keyvalues._BLOCK = old


def test_a_scan_reads_the_keys_under_its_prefix_among_many() -> None:
    now = [0.0]
    kv = KeyValues(lambda: now[0])
    names = [f"flows:job:{i:05d}:{j}" for i in range(3000) for j in range(3)]
    random.Random(7).shuffle(names)
    for name in names:
        kv.put(name, name, 10.0 if name.endswith(":2") else None)
    for name in names[::5]:
        kv.delete(name, None)
    gone = set(names[::5])
    want = {n: n for n in sorted(names) if n.startswith("flows:job:01234:") and n not in gone}
    assert kv.scan("flows:job:01234:") == want
    now[0] = 11.0  # the ":2" keys expired: a scan drops them as it reads
    assert kv.scan("flows:job:01234:") == {n: v for n, v in want.items() if not n.endswith(":2")}
    assert kv.scan("flows:job:") == {
        n: n for n in sorted(names) if n not in gone and not n.endswith(":2")
    }
