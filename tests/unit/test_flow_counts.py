"""The flow engine's batcher of count updates (flows/counting.py): the adds made together
share one ``counter_add_many`` call, each caller answered with its own value, and a failed
batch is each of its callers' error, never sent again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from workhorse.backends.sqlite import SQLiteBackend
from workhorse.errors import BackendError
from workhorse.flows.counting import Counts


async def test_adds_made_together_share_a_call_and_get_their_own_values(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'wh.db'}")
    await backend.open()
    calls: list[list[Any]] = []
    real = backend.counter_add_many

    async def counted(items: Any) -> list[int]:
        calls.append(list(items))
        return await real(items)

    setattr(backend, "counter_add_many", counted)  # noqa: B010 (counts calls, the store answers)
    try:
        counts = Counts(backend)
        first = [counts.add("run:a", 1, 60.0), counts.add("run:b", 5), counts.add("run:a", 2)]
        await asyncio.sleep(0)  # the first batch is in flight: these go in the next
        second = [counts.add("run:a", -3), counts.add("run:b", 0)]
        assert await asyncio.gather(*first, *second) == [1, 5, 3, 0, 5]
        assert calls == [
            [("run:a", 1, 60.0), ("run:b", 5, None), ("run:a", 2, None)],
            [("run:a", -3, None), ("run:b", 0, None)],
        ]
    finally:
        await backend.close()


async def test_a_failed_batch_is_each_callers_error_and_not_sent_again(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'wh.db'}")  # not open: every call fails
    counts = Counts(backend)
    adds = [counts.add("run:a", 1), counts.add("run:b", 1)]
    for add in adds:
        with pytest.raises(BackendError, match="not open"):
            await add
    await backend.open()
    try:
        assert await counts.add("run:a", 1) == 1  # the next batch: the failed adds made none
    finally:
        await backend.close()
