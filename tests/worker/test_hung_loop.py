"""The renewal thread's rule for a hung loop (see test_blocked_loop.py for the real
processes): it renews while the worker's loop pulses, stops renewing a job once the loop has
been silent for SILENT_LEASES of its leases, names the job that holds the loop, and does not
mistake a process held whole (SIGSTOP, a VM pause) for a hung loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from workhorse import JobContext, Workhorse
from workhorse.job import Lease
from workhorse.worker.renewal import SILENT_LEASES, RenewThread, Running
from workhorse.worker.worker import Worker


def _running(app: Workhorse, job_id: str, lease: float) -> Running:
    held = Lease(job_id, "token-" + job_id, "hog", "default", b"{}", 1, 1, None, lease, 0.0)
    return Running(held, JobContext(app, held))


async def test_renewal_stops_for_a_silent_loop_and_names_its_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Workhorse("memory://")
    worker: Worker = app.worker()
    loop = asyncio.get_running_loop()
    worker._loop = loop
    thread = RenewThread("memory://", worker, loop)  # never started: its rule alone
    hog, other = _running(app, "hog-job", 1.0), _running(app, "long-lease-job", 60.0)
    hog.task = asyncio.current_task()  # the task that holds the loop, as a handler would
    live = [hog, other]

    def look(silence: float, gap: float) -> list[Running]:
        now = time.monotonic()
        worker.pulse_at, thread._round_at = now - silence, now - gap
        return thread._heard(live)

    assert look(silence=0.1, gap=0.3) == live
    assert look(silence=SILENT_LEASES * 1.0 - 0.5, gap=0.3) == live  # blocked a while
    with caplog.at_level(logging.ERROR, "workhorse.worker"):
        assert look(silence=SILENT_LEASES * 1.0 + 0.5, gap=0.3) == [other]
    assert "event loop has been blocked for 3.5s, by job hog-job (task 'hog')" in caplog.text
    # The whole process was held as long as the loop: the loop had no chance to pulse.
    assert look(silence=10.0, gap=10.0) == live
    with caplog.at_level(logging.WARNING, "workhorse.worker"):
        assert look(silence=0.1, gap=0.3) == live
    assert "the event loop runs again" in caplog.text
