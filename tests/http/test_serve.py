"""``workhorse serve`` as a real process: it answers, and it refuses an open public bind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

APP = """
from workhorse import Workhorse, JobContext

app = Workhorse()

@app.task(mode="http", http={"path": "/api/echo"})
async def echo(data: dict, ctx: JobContext) -> dict:
    ctx.log("echo")
    return {"echo": data}

@app.task
async def noop(data: dict) -> dict:
    return {}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKHORSE_")}
    env.update(
        WORKHORSE_URL=f"sqlite:///{tmp_path / 'serve.db'}", PYTHONPATH=str(tmp_path), **extra
    )
    return env


def _workhorse() -> list[str]:
    return [sys.executable, "-m", "workhorse"]


def test_serve_answers_an_http_task_and_the_rest_api(tmp_path: Path) -> None:
    (tmp_path / "served_app.py").write_text(APP)
    port = _free_port()
    proc = subprocess.Popen(
        [*_workhorse(), "serve", "served_app:app", "--port", str(port), "--log-level", "warning"],
        env=_env(tmp_path, WORKHORSE_API_TOKENS="write:serve-token-123"),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": "Bearer serve-token-123"}
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "workhorse serve exited"
            assert time.monotonic() < deadline, "workhorse serve did not come up"
            time.sleep(0.1)
        r = httpx.post(f"{base}/api/echo", json={"x": 1}, headers=auth)
        assert (r.status_code, r.json()) == (200, {"echo": {"x": 1}})
        job = httpx.get(f"{base}/api/jobs/{r.headers['workhorse-job-id']}", headers=auth).json()
        assert (job["state"], job["http_call"]) == ("completed", True)
        assert httpx.post(f"{base}/api/echo", json={}).status_code == 401
        r = httpx.post(f"{base}/api/tasks/noop/jobs", json={}, headers=auth)
        assert r.status_code == 202
        # serve also carries the operations routes: a scrape and a readiness probe
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200
        assert 'queue="default"' in metrics.text
        assert httpx.get(f"{base}/health").status_code == 200
    finally:
        proc.terminate()
        _, out = proc.communicate(timeout=10)
    assert "serve-token-123" not in out  # a token is never logged
    assert "/api/echo" in out  # the start line lists the endpoints


def test_serve_refuses_a_public_address_without_tokens_unless_insecure(tmp_path: Path) -> None:
    (tmp_path / "served_app.py").write_text(APP)
    r = subprocess.run(
        [*_workhorse(), "serve", "served_app:app", "--host", "0.0.0.0"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "refusing to listen on 0.0.0.0 without auth" in r.stderr
    assert "--insecure" in r.stderr
