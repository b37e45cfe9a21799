"""``workhorse worker --log-format json``: every stderr line is one JSON object, and a
line logged inside a job carries its id, task, attempt and queue."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from .ops_app import make_logging
from .procs import workhorse


@pytest.mark.slow
async def test_json_log_lines_parse_back_with_the_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    log = tmp_path / "worker.log"
    app = make_logging(url=url)
    try:
        with workhorse(
            "worker", "ops_app:logging_app", "--url", url, "--log-format", "json", log=log
        ):
            handle = await app.enqueue("chatty", {"who": "ada"})
            await app.wait(handle.id, 15)
            boom = await app.enqueue("boom")
            await app.wait(boom.id, 15)
    finally:
        await app.close()
    lines = [orjson.loads(raw) for raw in log.read_text().splitlines() if raw.strip()]
    assert lines, "the worker logged nothing"
    assert all({"at", "level", "logger", "message"} <= set(line) for line in lines)
    charged = [line for line in lines if line["message"] == "charging ada"]
    assert len(charged) == 1
    assert charged[0]["job_id"] == handle.id
    assert charged[0]["task"] == "chatty"
    assert charged[0]["attempt"] == 1
    assert charged[0]["queue"] == "default"
    assert charged[0]["run"] == f"{handle.id}.1"
    assert charged[0]["cents"] == 5  # extra= fields are kept
    assert charged[0]["level"] == "warning"
    startup = [line for line in lines if line["message"] == "workhorse worker"]
    assert startup[0]["tasks"] == ["boom", "chatty", "flaky", "ok"]
    assert "job_id" not in startup[0]  # outside a job, no job fields
