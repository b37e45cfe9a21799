"""External triggers over every backend: firing one starts a run of each flow whose entry
lists it, once per key, and nothing for a trigger no flow listens to."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workhorse import Workhorse
from workhorse.errors import ConfigError
from workhorse.flows import KeyReused


def two_flows(app: Workhorse) -> None:
    """``user.signup`` starts onboarding and audit; ``user.left`` starts audit only."""

    @app.task(name="welcome", flow="onboarding", entry=True, triggers=["user.signup"])
    async def welcome(data: Any) -> Any:
        return {"welcomed": data["user"]}

    @app.task(name="record", flow="audit", entry=True, triggers=["user.signup", "user.left"])
    async def record(data: Any) -> Any:
        return {"recorded": data["user"]}


async def test_a_trigger_starts_one_run_of_each_flow_listening(app: Workhorse) -> None:
    two_flows(app)
    await app.start_worker(concurrency=2)
    runs = await app.flows.trigger("user.signup", {"user": "ada"})
    assert sorted(h.flow for h in runs) == ["audit", "onboarding"]
    results = {h.flow: await h.result(timeout=10) for h in runs}
    assert results == {
        "onboarding": {"welcome": {"welcomed": "ada"}},
        "audit": {"record": {"recorded": "ada"}},
    }
    assert [r.input for r in await app.flows.list("onboarding")] == [{"user": "ada"}]
    left = await app.flows.trigger("user.left", {"user": "bob"})
    assert [h.flow for h in left] == ["audit"]
    assert len(await app.flows.list("audit")) == 2
    assert len(await app.flows.list("onboarding")) == 1


async def test_the_same_key_starts_nothing_twice(app: Workhorse) -> None:
    two_flows(app)
    first = await app.flows.trigger("user.signup", {"user": "ada"}, key="evt-1")
    again = await app.flows.trigger("user.signup", {"user": "ada"}, key="evt-1")
    assert {h.flow: h.id for h in again} == {h.flow: h.id for h in first}
    assert all(h.replayed for h in again) and not any(h.replayed for h in first)
    # Concurrent repeats (a webhook delivered twice at once) still start one run each.
    racing = await asyncio.gather(
        *(app.flows.trigger("user.left", {"user": "bob"}, key="evt-2") for _ in range(5))
    )
    assert len({h.id for hs in racing for h in hs}) == 1
    assert len(await app.flows.list("onboarding")) == 1
    assert len(await app.flows.list("audit")) == 2
    # Another key is another event; the same key with other data is refused, not dropped.
    await app.flows.trigger("user.left", {"user": "bob"}, key="evt-3")
    assert len(await app.flows.list("audit")) == 3
    with pytest.raises(KeyReused, match="other data"):
        await app.flows.trigger("user.left", {"user": "eve"}, key="evt-3")


async def test_a_keyed_start_starts_one_run(app: Workhorse) -> None:
    two_flows(app)
    first = await app.flows.start("audit", {"user": "ada"}, key="k")
    again = await app.flows.start("audit", {"user": "ada"}, key="k")
    assert again.id == first.id and again.replayed
    assert len(await app.flows.list("audit")) == 1


async def test_a_trigger_no_flow_listens_to_starts_nothing(app: Workhorse) -> None:
    two_flows(app)
    assert await app.flows.trigger("user.unknown", {"user": "ada"}) == []
    assert await app.flows.list() == []
    with pytest.raises(ConfigError, match="trigger"):
        await app.flows.trigger("bad name", {})
