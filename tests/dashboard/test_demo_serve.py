"""``workhorse demo --serve`` prints the dashboard's address and a token, serves the demo's
jobs there, and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_demo_serve_prints_the_address_and_serves_the_dashboard(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKHORSE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workhorse",
            "demo",
            "--serve",
            "--port",
            str(port),
            "--batch",
            "20",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 50
        while "dashboard:" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, "no dashboard line"
            line = proc.stderr.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+/admin/)\s+log in with the token (\S+)", line)
        assert found, line
        base, token = found.groups()
        with httpx.Client(base_url=base) as http:
            for _ in range(100):
                try:
                    http.get("login")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert http.get("").status_code == 303  # to the login
            r = http.post("login", data={"token": token})
            assert r.status_code == 303
            overview = http.get("")
            assert overview.status_code == 200
            assert 'href="/admin/queues/batch"' in overview.text  # the tour's jobs
            runs = re.findall(r'href="/admin/flows/runs/([0-9a-f]{16})"', http.get("flows").text)
            assert runs, "the tour's order run is not listed"
            graph = http.get(f"flows/runs/{runs[0]}").text  # the demo flow's graph, all green
            for step in ("receive", "charge", "reserve", "ship"):
                assert f'data-step="{step}" data-state="completed"' in graph, step
            assert "ship ⋈ join" in graph
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
