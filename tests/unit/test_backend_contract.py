"""The Backend base class: every contract method is abstract, so a backend that lacks one
fails when it is built, not when a worker first calls the method."""

from __future__ import annotations

import inspect

import pytest

from workhorse.backends import Backend
from workhorse.backends.memory import MemoryBackend

# The optional hooks: a default that calls the contract methods.
_OPTIONAL = {
    "counter_add_many",
    "enqueue_claimed",
    "enqueue_claimed_with",
    "enqueue_watched",
    "events_head",
    "get_many",
    "job_events",
    "kv_get_many",
    "run_events",
    "wait_claim",
}


def test_every_contract_method_is_abstract() -> None:
    methods = {
        name
        for name, member in vars(Backend).items()
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }
    assert methods - _OPTIONAL == set(Backend.__abstractmethods__)
    assert {"kv_get", "kv_set", "kv_delete", "kv_extend", "kv_scan"} <= methods


def test_a_backend_lacking_a_method_cannot_be_built() -> None:
    async def stub(self: Backend, *args: object, **kwargs: object) -> None:
        return None

    others = {name: stub for name in Backend.__abstractmethods__ if name != "kv_get"}
    lacking = type("Lacking", (Backend,), others)
    with pytest.raises(TypeError, match="kv_get"):
        lacking()
    assert MemoryBackend() is not None  # the backends implement them all
