"""Real ``workhorse`` processes on the operations test app, killed at the end of a test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def workhorse(
    *args: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``workhorse ARGS`` with the test apps importable; SIGTERM, then SIGKILL, at the end."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]), **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workhorse", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
