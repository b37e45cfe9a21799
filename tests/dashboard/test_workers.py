"""The workers page's Pause and Resume buttons: the worker stops claiming and starts
again, and the page marks it paused (SQLite, Redis, PostgreSQL)."""

from __future__ import annotations

import asyncio
import time

from tests.dashboard.conftest import Board


async def _shown_paused(board: Board, worker_id: str, paused: bool) -> str:
    """The workers page once it lists the worker (its first heartbeat has landed) as paused
    or not."""
    deadline = time.monotonic() + 10
    while True:
        page = (await board.http.get("/admin/workers")).text
        listed = f"/admin/workers/{worker_id}/" in page
        if (listed and ('class="badge">paused' in page) is paused) or time.monotonic() > deadline:
            return page
        await asyncio.sleep(0.1)


async def test_the_workers_page_pauses_and_resumes_a_worker(board: Board) -> None:
    await board.login()
    worker = await board.app.start_worker(heartbeat_interval=0.5)
    assert worker is not None
    page = await _shown_paused(board, worker.id, paused=False)
    assert f'/admin/workers/{worker.id}/pause"' in page
    csrf = await board.csrf("/admin/workers")
    r = await board.http.post(f"/admin/workers/{worker.id}/pause", data={"csrf": csrf})
    assert r.status_code == 303 and "pause%20asked" in r.headers["location"]
    page = await _shown_paused(board, worker.id, paused=True)
    assert 'class="badge">paused' in page and worker.paused
    assert f'/admin/workers/{worker.id}/resume"' in page
    r = await board.http.post(f"/admin/workers/{worker.id}/resume", data={"csrf": csrf})
    assert r.status_code == 303
    assert 'class="badge">paused' not in await _shown_paused(board, worker.id, paused=False)
    assert not worker.paused
    r = await board.http.post("/admin/workers/gone-1-abcd/pause", data={"csrf": csrf})
    assert "not%20done" in r.headers["location"]
