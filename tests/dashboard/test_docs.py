"""docs/dashboard.md: its FastAPI example runs as printed, and it links every screenshot
the browser tests save."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import httpx

from tests.dashboard.conftest import WRITE_TOKEN, build

DOCS = Path(__file__).resolve().parents[2] / "docs"


async def test_the_fastapi_example_serves_the_api_and_the_dashboard() -> None:
    text = (DOCS / "dashboard.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "FastAPI()" in b)
    app = build()
    module = types.ModuleType("myproject.jobs")
    module.app = app  # type: ignore[attr-defined]
    sys.modules["myproject"] = types.ModuleType("myproject")
    sys.modules["myproject.jobs"] = module
    try:
        scope: dict[str, object] = {}
        exec(compile(block, "dashboard.md", "exec"), scope)
    finally:
        del sys.modules["myproject.jobs"], sys.modules["myproject"]
    await app.open()
    transport = httpx.ASGITransport(app=scope["api"])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        r = await http.post("/admin/login", data={"token": WRITE_TOKEN})
        assert r.status_code == 303
        assert (await http.get("/admin/")).status_code == 200
        assert (await http.get("/api/queues")).status_code == 401  # the API wants its bearer
    await app.close()


def test_every_screenshot_the_browser_tests_take_is_linked_and_none_is_left_over() -> None:
    text = (DOCS / "dashboard.md").read_text()
    tests = (Path(__file__).parent / "test_browser.py").read_text()
    taken = set(re.findall(r'check_axe\(page, "([a-z-]+)"\)', tests))
    assert {"overview", "job", "flow", "flows", "hooks", "login", "edit-payload"} <= taken
    for name in sorted(taken):
        assert f"(img/dashboard-{name}.png)" in text, name
    kept = {
        p.name.removeprefix("dashboard-").removesuffix(".png")
        for p in DOCS.glob("img/dashboard-*.png")
    }
    assert kept == taken, "a screenshot no test takes (stale) or one not yet taken"
