"""docs/http.md's send-email example runs as printed, in its three modes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from workhorse.errors import ConfigError
from workhorse.http import create_app

DOCS = Path(__file__).resolve().parents[2] / "docs"


async def test_the_send_email_example_in_three_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    block = re.findall(r"```python\n(.*?)```", (DOCS / "http.md").read_text(), re.S)[0]
    monkeypatch.setenv("WORKHORSE_URL", "memory://")
    monkeypatch.setenv("WORKHORSE_API_TOKENS", "write:docs-token-1")
    scope: dict[str, Any] = {"__name__": "docs_http"}
    exec(compile(block, "docs/http.md", "exec"), scope)
    app = scope["app"]
    auth = {"Authorization": "Bearer docs-token-1"}
    email = {"to": "a@b.c", "subject": "hi"}
    transport = httpx.ASGITransport(app=create_app(app))
    async with app, httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/api/tasks/send-email", json=email, headers=auth)
        assert (r.status_code, r.json()) == (200, {"sent": True})
        r = await c.post("/api/tasks/send_email_either/call", json=email, headers=auth)
        assert (r.status_code, r.json()) == (200, {"sent": True})
        for name in ("send_email", "send_email_either"):
            r = await c.post(f"/api/tasks/{name}/jobs", json=email, headers=auth)
            assert r.status_code == 202
        assert (
            await c.post("/api/tasks/send_email/call", json=email, headers=auth)
        ).status_code in (404, 405)
        with pytest.raises(ConfigError):
            await app.enqueue("send_email_now", email)
