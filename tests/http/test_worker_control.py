"""Pausing and resuming a live worker over the REST API (write scope), and the state shown
by GET /api/workers, on every store the REST tests use."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.http.conftest import READ, WRITE, Served


async def _worker_row(served: Served, paused: bool) -> dict[str, Any]:
    """The worker's row once it shows ``paused`` (its next beat), within 10 s."""
    deadline = time.monotonic() + 10
    while True:
        rows = (await served.http.get("/api/workers", headers=READ)).json()
        if (rows and rows[0]["paused"] is paused) or time.monotonic() > deadline:
            assert rows, "no worker listed"
            return dict(rows[0])
        await asyncio.sleep(0.05)


async def test_a_worker_paused_over_http_claims_nothing_until_resumed(served: Served) -> None:
    worker = await served.app.start_worker(heartbeat_interval=0.5)
    assert worker is not None
    row = await _worker_row(served, paused=False)
    assert "noop" in row["tasks"]
    r = await served.http.post(f"/api/workers/{worker.id}/pause", headers=WRITE)
    assert (r.status_code, r.json()["ok"]) == (200, True)
    assert (await _worker_row(served, paused=True))["paused"] is True
    assert worker.paused

    job = (await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)).json()
    await asyncio.sleep(0.5)
    state = (await served.http.get(f"/api/jobs/{job['id']}", headers=READ)).json()["state"]
    assert state == "queued"  # paused: nobody claimed it

    r = await served.http.post(f"/api/workers/{worker.id}/resume", headers=WRITE)
    assert r.status_code == 200
    r = await served.http.get(f"/api/jobs/{job['id']}/result?wait=10", headers=READ)
    assert (r.status_code, r.json()["state"]) == (200, "completed")
    assert (await _worker_row(served, paused=False))["paused"] is False


async def test_worker_control_needs_the_write_scope_and_a_live_worker(served: Served) -> None:
    worker = await served.app.start_worker(heartbeat_interval=0.5)
    assert worker is not None
    await _worker_row(served, paused=False)
    for verb in ("pause", "resume"):
        path = f"/api/workers/{worker.id}/{verb}"
        assert (await served.http.post(path)).status_code == 401
        assert (await served.http.post(path, headers=READ)).status_code == 403
        r = await served.http.post(f"/api/workers/gone-1-abcd/{verb}", headers=WRITE)
        assert r.status_code == 404
        assert r.json()["error"]["message"] == "no live worker gone-1-abcd"
        assert worker.id not in r.text  # the other workers' ids are not told
    assert not worker.paused
