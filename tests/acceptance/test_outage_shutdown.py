"""A worker whose store becomes unreachable still exits on the first SIGTERM, within the
shutdown grace and a margin, with a non-zero status and a log saying that its jobs come
back when their leases expire: a `workhorse worker` process, its store behind a TCP proxy
that is cut while a job runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.harness import Ledger, drop_store
from tests.chaos.proxy import Proxy
from tests.conftest import backend_url
from workhorse import JobState, Workhorse, codec
from workhorse.backends import backend_from_url
from workhorse.job import NewJob, Outcome, new_job_id
from workhorse.worker.finisher import Finisher

pytestmark = pytest.mark.slow

GRACE = 2.0
MARGIN = 25.0  # the last writes (5 s), then closing (connect timeouts of 5 s), loaded


@pytest.fixture(params=["redis", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    pytest.importorskip(f"workhorse.backends.{request.param}")
    return str(request.param)


@pytest.fixture
def proxy(kind: str) -> Iterator[Proxy]:
    p = Proxy("127.0.0.1", 6379 if kind == "redis" else 5432).start()
    try:
        yield p
    finally:
        p.close()


def _through(url: str, port: int) -> str:
    default = "127.0.0.1:6379" if url.startswith("redis") else "127.0.0.1:5432"
    assert default in url, url
    return url.replace(default, f"127.0.0.1:{port}")


async def test_sigterm_with_the_store_down_exits_nonzero_within_grace(
    kind: str, proxy: Proxy, tmp_path: Path
) -> None:
    url = backend_url(kind, tmp_path)
    ledger = Ledger(tmp_path / "ledger.txt")
    env = {**os.environ, "WORKHORSE_URL": _through(url, proxy.port),
           "OUTAGE_LEDGER": str(ledger.path)}  # fmt: skip
    log = tmp_path / "worker.log"
    proc = _spawn(env, log)
    producer = Workhorse(url)
    producer.task(name="nap")(lambda data: None)
    try:
        async with producer:
            await producer.enqueue("nap", {"sleep": 1.0})
            await ledger.wait("start", timeout=30)
            proxy.cut()
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            while proc.poll() is None and time.monotonic() - sent < GRACE + MARGIN + 20:
                await asyncio.sleep(0.05)
            took = time.monotonic() - sent
            output = log.read_text(errors="replace")
            assert proc.poll() is not None, f"still running {took:.1f}s after SIGTERM:\n{output}"
            assert proc.returncode != 0, output
            assert took < GRACE + MARGIN, f"exited after {took:.1f}s:\n{output}"
            assert "leases expire" in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        await drop_store(url)


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workhorse", "worker", "tests.acceptance.outage_app:app",
             "--shutdown-grace", str(GRACE)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def test_outcomes_written_during_a_cut_are_kept_until_the_store_is_back(
    kind: str, proxy: Proxy, tmp_path: Path
) -> None:
    """A lost connection is no reason to judge an outcome rejected: the finisher keeps it
    through many failed writes (isolation included) and writes it as it was."""
    url = backend_url(kind, tmp_path)
    direct, through = backend_from_url(url), backend_from_url(_through(url, proxy.port))
    await direct.open()
    await through.open()
    try:
        job = NewJob(new_job_id(), "nap", "default", codec.dumps({}))
        await direct.enqueue([job])
        [lease] = await through.claim(["default"], "w", 1, 60)
        finisher = Finisher(through)
        proxy.cut()
        written = finisher.submit(lease, Outcome("completed", result=codec.dumps(7)))
        await asyncio.sleep(3)  # the write fails again and again, one by one too
        assert not written.done()
        proxy.heal()
        assert await asyncio.wait_for(written, 30)
        stored = await direct.get(job.id)
        assert stored is not None
        assert (stored.state, stored.result) == (JobState.COMPLETED, 7)
    finally:
        await through.close()
        drop = getattr(direct, "drop", None)
        if drop is not None:
            await drop()
        await direct.close()
