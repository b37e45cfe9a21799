"""A fuzz of the command runtime's JSON-lines protocol: a program that answers its job
with arbitrary lines (garbage, half messages, wrong types, calls with hostile
parameters) never takes the worker down and never hangs it. Every attempt ends as a
result (valid JSON) or a failure with a str type and message."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workhorse import Workhorse
from workhorse.backends.memory import MemoryBackend
from workhorse.context import JobContext
from workhorse.job import Lease, new_job_id
from workhorse.worker.runner import Runner
from workhorse.worker.threads import DaemonThreads

# The program writes back the lines its job carries (hex, so any bytes but a newline).
PROGRAM = """\
import json, sys
job = json.loads(sys.stdin.readline())
for line in job["data"]["lines"]:
    sys.stdout.buffer.write(bytes.fromhex(line) + b"\\n")
sys.stdout.flush()
"""

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text()
)
json_any = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# 'message' and 'level' as field names are the known gap tested (xfail) below; the fuzz
# leaves them out so that it keeps looking for others.
field_names = st.sampled_from(["stream", "fields", "type", "value", "error", "retry", "id", "x"])
messages = st.one_of(
    st.builds(
        dict,
        type=st.sampled_from(["log", "result", "error", "hello", "call", "reply", "bogus"]),
    ),
    st.fixed_dictionaries(
        {"type": st.just("log")},
        optional={
            "message": json_any,
            "level": json_any,
            "fields": st.one_of(json_any, st.dictionaries(field_names, json_any, max_size=3)),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("call")},
        optional={
            "id": json_any,
            "method": st.sampled_from(
                ["progress", "log", "enqueue", "state.get", "state.set", "emit", "os.system"]
            ),
            "params": st.one_of(
                json_any,
                st.dictionaries(
                    st.sampled_from(
                        ["value", "message", "level", "fields", "task", "data", "options", "key"]
                    ),
                    json_any,
                    max_size=4,
                ),
            ),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("error")}, optional={"error": json_any, "retry": json_any}
    ),
    st.fixed_dictionaries({"type": st.just("hello")}, optional={"reuse": json_any}),
    st.fixed_dictionaries({"type": json_any}, optional={"value": json_any}),
)
raw_lines = st.one_of(
    messages.map(orjson.dumps),
    st.binary(max_size=60).filter(lambda b: b"\n" not in b and b"\r" not in b),
    json_any.map(orjson.dumps),
)
endings: st.SearchStrategy[list[bytes]] = st.one_of(
    st.just([]),  # no answer: the program just exits
    st.builds(lambda v: [orjson.dumps({"type": "result", "value": v})], json_any),
    st.just([b'{"type": "error", "error": {"type": "Boom", "message": "no"}}']),
)


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cmd") / "echo_lines.py"
    path.write_text(PROGRAM)
    return path


def _app(program: Path) -> Workhorse:
    app = Workhorse(backend=MemoryBackend())

    @app.task(runtime="command", command=[sys.executable, str(program)], retries=1)
    def cmd() -> None: ...

    @app.task
    def known(data: Any = None) -> None: ...

    return app


async def _attempt(app: Workhorse, lines: list[bytes]) -> tuple[str, Any]:
    data = orjson.dumps({"lines": [line.hex() for line in lines]})
    lease = Lease(new_job_id(), "tok", "cmd", "default", data, 1, 2, 10.0, 30.0, time.time())
    threads = DaemonThreads()
    runner = Runner(app, threads, concurrency=1)
    try:
        outcome = await asyncio.wait_for(runner.run(lease, JobContext(app, lease)), 15)
    finally:
        await runner.close()
        threads.shutdown(wait=False)
    if outcome.kind == "completed":
        assert outcome.result is not None
        return "completed", orjson.loads(outcome.result)
    assert outcome.kind in ("failed", "retry"), outcome
    assert outcome.error is not None
    assert isinstance(outcome.error["type"], str) and isinstance(outcome.error["message"], str)
    return outcome.kind, outcome.error


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=st.lists(raw_lines, max_size=6), end=endings)
def test_fuzz_any_program_output_ends_the_attempt_cleanly(
    program: Path, body: list[bytes], end: list[bytes]
) -> None:
    app = _app(program)
    kind, detail = asyncio.run(_attempt(app, body + end))
    if any(_terminal(line) for line in body):
        return  # an earlier line ended the attempt: whichever, it ended cleanly
    said = [orjson.loads(x) for x in end]
    if not said:
        assert kind != "completed"  # exited without a result: a failure, with its reason
    elif said[0]["type"] == "result":
        assert (kind, detail) == ("completed", said[0]["value"])
    else:
        assert kind != "completed" and detail["type"] == "Boom"


def _terminal(line: bytes) -> bool:
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(msg, dict) and msg.get("type") in ("result", "error")


async def test_a_log_line_whose_fields_reuse_a_parameter_name_is_kept(program: Path) -> None:
    """``{"type": "log", "fields": {"message": ...}}`` must not fail the job."""
    app = _app(program)
    lines = [
        orjson.dumps({"type": "log", "message": "m", "fields": {"message": 1, "level": 2}}),
        orjson.dumps({"type": "result", "value": 7}),
    ]
    assert await _attempt(app, lines) == ("completed", 7)
