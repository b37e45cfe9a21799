"""Health for Kubernetes probes: ``workhorse check`` exit codes and ``GET /health`` status
codes with a private Redis server stopped and started again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from tests.chaos.servers import PrivateRedis
from tests.conftest import private_redis
from workhorse import Workhorse
from workhorse.observability.routes import router

from .ops_app import make
from .procs import HERE


def check(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "workhorse", "check", "ops_app:app", "--url", url,
         "--json", *args],
        capture_output=True,
        timeout=30,
        env={"PYTHONPATH": str(HERE), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return done.returncode, orjson.loads(done.stdout) if done.stdout.strip() else {}


async def health(app: Workhorse, path: str = "/health") -> httpx.Response:
    api = FastAPI()
    api.include_router(router(app))
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.get(path)


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    yield from private_redis()


@pytest.mark.slow
async def test_check_and_health_follow_the_store_down_and_up(
    redis_server: Any, tmp_path: Path
) -> None:
    url = redis_server.url
    app = make(url=url)
    try:
        await app.enqueue("ok", {"n": 1})  # no worker runs: degraded, not down
        code, report = check(url, "--strict")
        assert (code, report["status"], report["queued"]) == (4, "degraded", {"default": 1})
        assert "no live worker" in report["problems"][0]
        response = await health(app)
        assert response.status_code == 200  # degraded is still ready
        assert response.json()["status"] == "degraded"
        assert response.json()["oldest_age"]["default"] >= 0

        redis_server.stop()
        code, report = check(url)
        assert (code, report["status"]) == (1, "down")
        response = await health(app)
        assert response.status_code == 503
        assert response.json()["status"] == "down"
        assert response.json()["error"]
        assert (await health(app, "/metrics")).status_code == 503

        redis_server.start()
        code, report = check(url)
        assert (code, report["status"]) == (0, "ok")  # an empty store again (no persistence)
        response = await health(app)
        assert (response.status_code, response.json()["status"]) == (200, "ok")
    finally:
        await app.close()
