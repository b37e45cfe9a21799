"""The flat public API is a promise: adding a name is a decision, removing one breaks users."""

from pathlib import Path

import pytest

import workhorse
from tests.conftest import backend_url

EXPECTED = {
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Backoff",
    "BoundTask",
    "Capabilities",
    "ConfigError",
    "Custom",
    "DuplicateJob",
    "Event",
    "Exponential",
    "Fixed",
    "FlowFailed",
    "Hook",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobEvent",
    "JobFailed",
    "JobHandle",
    "JobKey",
    "JobState",
    "LeaseLost",
    "PayloadError",
    "RunHandle",
    "RunInfo",
    "RunTimeout",
    "Settings",
    "Task",
    "UnknownTaskError",
    "Worker",
    "WorkerInfo",
    "Workhorse",
    "WorkhorseError",
    "__version__",
    "backend_from_url",
}


def test_public_names_are_pinned() -> None:
    assert set(workhorse.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(workhorse, name), name


def test_every_error_is_a_workhorse_error() -> None:
    for name in workhorse.__all__:
        obj = getattr(workhorse, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, workhorse.WorkhorseError), name


def test_flows_and_hooks_load_on_first_use() -> None:
    """An app with neither imports neither's machinery; naming one loads it."""
    import subprocess
    import sys

    script = """
import sys
from workhorse import Workhorse
app = Workhorse("memory://")
@app.task
async def noop() -> None: ...
app.worker()
loaded = sorted(m for m in sys.modules if m.startswith(("workhorse.flows.", "workhorse.hooks.",
                                                       "workhorse.observability.tracing")))
print(" ".join(loaded))
from workhorse import FlowFailed, Hook
print(FlowFailed.__module__, Hook.__module__, "workhorse.flows.engine" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # The step options' names live in the flows package itself: a plain app loads none of
    # the flows' or hooks' modules, nor tracing's.
    assert out[0].split() == []
    assert out[1] == "workhorse.flows.records workhorse.hooks.hook False"


_PLAIN_WORKER = """
import asyncio, sys
from workhorse import Workhorse

async def main(url: str) -> None:
    app = Workhorse(url)

    @app.task
    async def noop() -> None: ...

    await app.open()
    try:
        app.worker()
        tops = {m.split(".")[0] for m in sys.modules}
        print(" ".join(sorted(tops & {"croniter", "dateutil", "redis"})))
    finally:
        drop = getattr(app.client.backend, "drop", None)
        if drop is not None:
            await drop()
        await app.close()

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_plain_worker_loads_no_library_it_does_not_use(kind: str, tmp_path: Path) -> None:
    """Cron's parser (croniter, dateutil) loads with the first cron rule and redis-py with
    the first cluster URL: a plain worker's process is smaller without them."""
    import subprocess
    import sys

    url = backend_url(kind, tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", _PLAIN_WORKER, url], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == []
