"""``workhorse serve`` as a real process: it answers, and it refuses an open public bind."""

from __future__ import annotations

import os
import signal
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


def _serve(tmp_path: Path, token: str) -> tuple[subprocess.Popen[str], str]:
    """``workhorse serve`` of APP with one write token, once it answers: the process and
    its base URL."""
    (tmp_path / "served_app.py").write_text(APP)
    port = _free_port()
    proc = subprocess.Popen(
        [*_workhorse(), "serve", "served_app:app", "--port", str(port), "--log-level", "warning"],
        env=_env(tmp_path, WORKHORSE_API_TOKENS=f"write:{token}"),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/api/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, out = proc.communicate(timeout=10)
            raise AssertionError(f"workhorse serve did not come up: {out[-2000:]}")
        time.sleep(0.1)


def test_serve_answers_an_http_task_and_the_rest_api(tmp_path: Path) -> None:
    proc, base = _serve(tmp_path, "serve-token-123")
    try:
        auth = {"Authorization": "Bearer serve-token-123"}
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


HOOKED_APP = """
import os
import signal
from pathlib import Path
from workhorse import Workhorse

app = Workhorse()

@app.on("test.order", name="save_order")
async def save(event) -> None:
    if Path("broken").exists():
        raise ConnectionError("db down")
    with open("ledger", "a") as f:
        f.write(f"{event.job_id} {os.getpid()}\\n")
"""


def test_serve_listen_runs_the_hooks_and_replays_a_parked_event(tmp_path: Path) -> None:
    import asyncio

    from workhorse import Workhorse
    from workhorse.job import Event

    (tmp_path / "hooked_app.py").write_text(HOOKED_APP)
    (tmp_path / "broken").touch()
    port = _free_port()
    env = _env(
        tmp_path,
        WORKHORSE_API_TOKENS="write:serve-token-123",
        WORKHORSE_HOOK_ATTEMPTS="1",
        WORKHORSE_HOOK_POLL_INTERVAL="0.05",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_workhorse(), "serve", "hooked_app:app", "--port", str(port), "--listen"],
            env=env,
            cwd=tmp_path,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer serve-token-123"}

    def until(probe: object, what: str) -> None:
        deadline = time.monotonic() + 15
        while not _try(probe):
            assert proc.poll() is None, f"workhorse serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"waited for {what}"
            time.sleep(0.1)

    def listening() -> bool:
        groups = httpx.get(f"{base}/api/hooks", headers=auth).json()["groups"]
        return bool(groups) and groups[0]["listeners"] == 1

    def parked() -> list[dict[str, object]]:
        r = httpx.get(f"{base}/api/hooks/app/parked", headers=auth)
        return list(r.json()["parked"])

    async def publish() -> None:
        producer = Workhorse(url=env["WORKHORSE_URL"])
        async with producer:
            await producer.backend.publish([Event("test.order", "order-1")])

    try:
        until(listening, "the server's listener to join group app")
        asyncio.run(publish())
        until(parked, "the failing hook to park the event")
        assert not (tmp_path / "ledger").exists()
        (tmp_path / "broken").unlink()
        pid = parked()[0]["id"]
        r = httpx.post(f"{base}/api/hooks/parked/{pid}/replay", headers=auth)
        assert r.status_code == 200, r.text
        assert parked() == []
        order, pid_of_writer = (tmp_path / "ledger").read_text().split()
        assert order == "order-1"
        assert int(pid_of_writer) == proc.pid  # replayed in the server process
    finally:
        proc.terminate()
        proc.wait(15)
    assert "hooks listener: group=app hooks: save_order" in log.read_text()


def _try(probe: object) -> bool:
    try:
        return bool(probe())  # type: ignore[operator]
    except (httpx.TransportError, KeyError, ValueError):
        return False


def test_serve_stops_on_sigterm_with_an_event_stream_open(tmp_path: Path) -> None:
    # uvicorn's graceful shutdown waits for every response to end; an open stream (a
    # dashboard tab, a client following the log) must end with the server, not hold it
    # until a SIGKILL.
    proc, base = _serve(tmp_path, "serve-token-123")
    try:
        headers = {"Authorization": "Bearer serve-token-123", "Accept": "text/event-stream"}
        with httpx.stream("GET", f"{base}/api/events", headers=headers, timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            proc.send_signal(signal.SIGTERM)
            # uvicorn raises the signal again once it has shut down gracefully.
            assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
