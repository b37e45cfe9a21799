"""Bad payloads are refused at enqueue with a PayloadError that says what is wrong, and a
payload the worker cannot decode ends its job as failed: never a crash, never a
RecursionError, never anything but JSON. Includes a Hypothesis fuzz of the encode path
(``Task.prepare``) and of the decode path (``codec.loads``, ``Task.decode`` and the
worker's ``Runner.run``) with arbitrary values and bytes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from workhorse import Workhorse, codec
from workhorse.backends.memory import MemoryBackend
from workhorse.context import JobContext
from workhorse.errors import PayloadError
from workhorse.job import Lease, new_job_id
from workhorse.task import Task
from workhorse.worker.runner import Runner
from workhorse.worker.threads import DaemonThreads

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Email(BaseModel):
    to: str
    tags: list[str] = []


def make_app() -> Workhorse:
    app = Workhorse(backend=MemoryBackend(), max_payload=4096)

    @app.task
    def untyped(data: Any) -> Any:
        return data

    @app.task
    def as_dict(data: dict[str, Any]) -> Any:
        return data

    @app.task
    def as_list(data: list[Any]) -> Any:
        return data

    @app.task
    def as_model(data: Email) -> Any:
        return data.to

    return app


APP = make_app()  # for the sync fuzz tests: prepare and decode never touch the store


@pytest.fixture
async def fresh() -> Workhorse:
    """An app of its own per test, so that counts() shows that nothing was stored."""
    return make_app()


def task(name: str) -> Task[Any, Any]:
    return APP.tasks[name]


def nested_list(depth: int) -> list[Any]:
    root: list[Any] = []
    cur = root
    for _ in range(depth - 1):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    return root


def nested_dict(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    cur = root
    for _ in range(depth - 1):
        nxt: dict[str, Any] = {}
        cur["a"] = nxt
        cur = nxt
    return root


# -- refused at enqueue -------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        object(),
        b"\x80\x04pickle",
        {"when": time},  # a module
        {(1, 2): "tuple keys"},
        {"f": lambda: 1},
        complex(1, 2),
    ],
    ids=["set", "object", "bytes", "module", "tuple-keys", "function", "complex"],
)
async def test_values_that_are_not_json_are_refused(fresh: Workhorse, value: Any) -> None:
    with pytest.raises(PayloadError, match="untyped.*JSON"):
        await fresh.enqueue("untyped", value)
    assert await fresh.counts() == {}


async def test_a_payload_over_the_cap_is_refused_naming_the_cap(fresh: Workhorse) -> None:
    with pytest.raises(PayloadError, match=r"4,096-byte cap.*WORKHORSE_MAX_PAYLOAD"):
        await fresh.enqueue("untyped", {"blob": "x" * 5000})
    with pytest.raises(PayloadError, match="cap"):
        await fresh.enqueue("as_dict", {"blob": "x" * 5000})
    assert await fresh.counts() == {}


@pytest.mark.parametrize("name", ["untyped", "as_list", "as_dict", "as_model"])
async def test_10000_levels_of_nesting_are_refused_clearly(fresh: Workhorse, name: str) -> None:
    deep: Any = nested_dict(10_000) if name == "as_dict" else nested_list(10_000)
    if name == "as_model":
        deep = {"to": "a@b.c", "tags": deep}
    with pytest.raises(PayloadError) as caught:
        await fresh.enqueue(name, deep)
    assert name in str(caught.value)
    assert "nested" in str(caught.value) or "valid" in str(caught.value)
    assert await fresh.counts() == {}


async def test_a_self_referencing_payload_is_refused(fresh: Workhorse) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(PayloadError, match="refers to itself"):
        await fresh.enqueue("untyped", loop)


async def test_a_typed_task_refuses_a_payload_its_serializer_cannot_write(fresh: Workhorse) -> None:
    # Validation lets Any through; pydantic's JSON dump then raised a bare ValueError.
    with pytest.raises(PayloadError, match="as_dict"):
        await fresh.enqueue("as_dict", {"x": object()})


async def test_the_largest_nesting_allowed_still_round_trips() -> None:
    value = nested_list(codec.MAX_DEPTH)
    _, raw = task("untyped").prepare(value)
    assert orjson.loads(raw) == value


# -- the decode path: what the worker does with bytes from the store ----------------
def test_deeply_nested_bytes_fail_to_decode_with_a_value_error() -> None:
    raw = b"[" * 10_000 + b"]" * 10_000
    with pytest.raises(ValueError, match="depth"):
        codec.loads(raw)


async def _run_attempt(name: str, raw: bytes) -> tuple[str, dict[str, Any] | None]:
    lease = Lease(new_job_id(), "tok", name, "default", raw, 1, 3, None, 30.0, time.time())
    threads = DaemonThreads()
    try:
        outcome = await Runner(APP, threads).run(lease, JobContext(APP, lease))
    finally:
        threads.shutdown(wait=False)
    return outcome.kind, outcome.error


@pytest.mark.parametrize("name", ["untyped", "as_dict", "as_model"])
@pytest.mark.parametrize(
    "raw",
    [
        b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.",
        b"[" * 10_000 + b"]" * 10_000,
        b"",
        b"\xff\xfe\x00",
        b'{"to": "a@b.c"',
        b"NaN",
    ],
    ids=["pickle", "deep", "empty", "not-utf8", "truncated", "nan"],
)
async def test_the_worker_fails_an_undecodable_payload_without_retrying(
    name: str, raw: bytes
) -> None:
    kind, error = await _run_attempt(name, raw)
    assert kind == "failed"  # not a retry: the same bytes can never decode
    assert error is not None and error["type"] == "workhorse.errors.PayloadError"
    message = error["message"]
    assert "payload is not JSON" in message or f"does not validate for task {name!r}" in message


# -- fuzz ------------------------------------------------------------------------------
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=30,
)
odd_values = st.one_of(
    st.binary(),
    st.sets(st.integers(), max_size=3),
    st.tuples(st.integers(), st.text()),
    st.integers(min_value=2**64),  # beyond 64 bits
    st.integers(max_value=-(2**63) - 1),
    st.dictionaries(st.integers(), st.integers(), max_size=3),
    st.builds(object),
    st.complex_numbers(),
    st.floats(allow_nan=True, allow_infinity=True),
)


@FUZZ
@given(value=st.one_of(json_values, odd_values, st.lists(odd_values, max_size=3)))
@pytest.mark.parametrize("name", ["untyped", "as_dict", "as_list", "as_model"])
def test_fuzz_prepare_refuses_or_round_trips(name: str, value: Any) -> None:
    """Whatever a producer passes, prepare either refuses it with a PayloadError or
    returns bytes that decode to exactly what the handler will be given."""
    t = task(name)
    try:
        handler_value, raw = t.prepare(value)
    except PayloadError:
        return
    assert len(raw) <= APP.settings.max_payload
    decoded = t.decode(raw)  # what the worker hands the function: never an error
    if t._data_adapter is None:
        assert decoded == _json(handler_value)  # JSON has lists, not tuples
    else:
        # A model-typed task converts in JSON mode (as its fields declare): what the
        # worker sees must encode back to the very same bytes.
        assert t.prepare(decoded)[1] == raw


def _json(value: Any) -> Any:
    # A refused NaN or infinity never gets here: prepare() raised for it.
    assert not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (float("nan"), "its top level"),
        ({"price": float("inf")}, "['price']"),
        ({"rows": [1.0, {"x": -float("inf")}]}, "['rows'][1]['x']"),
    ],
)
def test_nan_and_infinity_are_refused_not_turned_into_null(value: Any, where: str) -> None:
    with pytest.raises(PayloadError, match="JSON cannot carry") as caught:
        task("untyped").prepare(value)
    assert where in str(caught.value)


def test_a_real_null_still_passes() -> None:
    assert task("untyped").decode(task("untyped").prepare({"a": None, "b": 1.5})[1]) == {
        "a": None,
        "b": 1.5,
    }


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), json_values.map(orjson.dumps)))
def test_fuzz_decode_returns_or_raises_a_value_error(raw: bytes) -> None:
    for name in ("untyped", "as_dict", "as_model"):
        # orjson.JSONDecodeError and pydantic's ValidationError are ValueErrors; anything
        # else (RecursionError, SystemError, a crash) fails the test.
        with contextlib.suppress(ValueError):
            task(name).decode(raw)


@settings(FUZZ, max_examples=150)
@given(raw=st.one_of(st.binary(max_size=200), json_values.map(orjson.dumps)))
def test_fuzz_the_worker_turns_any_bytes_into_an_outcome(raw: bytes) -> None:
    """The runner never raises on stored bytes: it completes, or fails with a reason."""

    async def attempt() -> list[tuple[str, dict[str, Any] | None]]:
        return [await _run_attempt(n, raw) for n in ("untyped", "as_dict", "as_model")]

    for kind, error in asyncio.run(attempt()):
        assert kind in ("completed", "failed"), (kind, error)
        if kind == "failed":
            assert error is not None and error["type"] == "workhorse.errors.PayloadError"


@pytest.mark.parametrize("name", ["untyped", "as_dict", "as_list"])
@pytest.mark.parametrize(
    ("value", "held", "where"),
    [
        ({"price": float("nan")}, "nan", "['price']"),
        ({"rows": [1.0, {"x": -float("inf")}]}, "-inf", "['rows'][1]['x']"),
        ({"tags": {"a", "b"}}, "a set", "['tags']"),
        ({"blob": b"\x00"}, "a bytes", "['blob']"),
    ],
)
def test_one_rule_for_every_annotation(name: str, value: Any, held: str, where: str) -> None:
    """A task typed dict or list refuses what an untyped one refuses, naming the field,
    instead of storing null for NaN, a list for a set or text for bytes."""
    payload = value if name != "as_list" else [value]
    with pytest.raises(PayloadError, match="JSON cannot carry") as caught:
        task(name).prepare(payload)
    assert held in str(caught.value)
    assert where in str(caught.value)
