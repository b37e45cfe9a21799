"""The dashboard in a real headless Chromium (Debian's, never a downloaded one), driven by
Playwright, against `workhorse serve` and `workhorse worker` processes on one SQLite store.
axe-core checks every page; each page's screenshot goes to docs/img/dashboard-*.png."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).parent
ROOT = HERE.parent.parent
IMG = ROOT / "docs" / "img"
WRITE, READ = "browser-write-token", "browser-read-token"
APP = "tests.dashboard.browser_app:app"

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail("CI: /usr/bin/chromium is missing; `make browser` installs it")
    pytest.skip(
        "no /usr/bin/chromium: run `make browser` (as root) to install it",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Site:
    def __init__(self, base: str, env: dict[str, str]) -> None:
        self.base = base
        self.env = env

    def cli(self, *args: str) -> str:
        """A workhorse command in a process of its own."""
        out = subprocess.run(
            [sys.executable, "-m", "workhorse", *args, "--app", APP],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.strip().split()[-1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKHORSE_")}
    env.update(
        WORKHORSE_URL=f"sqlite:///{tmp / 'board.db'}",
        WORKHORSE_API_TOKENS=f"write:{WRITE},read:{READ}",
        PYTHONPATH=str(ROOT),
        WORKHORSE_HOOK_RETRY_DELAY="0.05",
    )
    port = _free_port()
    wh = [sys.executable, "-m", "workhorse"]
    server = subprocess.Popen(
        [*wh, "serve", APP, "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [*wh, "worker", APP],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listener = subprocess.Popen(
        [*wh, "listen", APP, "--log-level", "error"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a loaded CI machine: 20 s was once too short
        while True:
            try:
                if httpx.get(f"{base}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "workhorse serve exited"
            assert time.monotonic() < deadline, "workhorse serve did not come up"
            time.sleep(0.1)
        yield Site(base, env)
    finally:
        for proc in (server, worker, listener):
            proc.terminate()
        for proc in (server, worker, listener):
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def login(browser: Any, site: Site, token: str) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{site.base}/admin/")
    assert "/admin/login" in page.url  # an unauthenticated visit lands on the login
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.base}/admin/")
    return page


def check_axe(page: Any, name: str) -> None:
    """No serious or critical accessibility violation; a screenshot for the docs."""
    page.add_script_tag(path=str(HERE / "vendor" / "axe.min.js"))
    result = page.evaluate("async () => await axe.run(document)")
    bad = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: {json.dumps(bad)}"
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"dashboard-{name}.png"), full_page=True)


def test_login_page_and_an_unauthenticated_visit(browser: Any, site: Site) -> None:
    page = browser.new_page()
    page.goto(f"{site.base}/admin/queues/default")
    assert "/admin/login" in page.url
    assert page.locator("#token").is_visible()
    check_axe(page, "login")
    page.close()


def test_overview_shows_a_job_enqueued_elsewhere_within_two_seconds(
    browser: Any, site: Site
) -> None:
    auth = {"Authorization": f"Bearer {WRITE}"}
    for n in range(12):  # some history for the charts (the API: no process start each)
        task = "boom" if n % 4 == 0 else "signup"
        httpx.post(f"{site.base}/api/tasks/{task}/jobs", json={"user": n}, headers=auth)
    page = login(browser, site, WRITE)
    page.wait_for_timeout(600)  # the page's event stream is open
    site.cli("enqueue", "signup", "--data", '{"user": "grace"}', "--delay", "3600")
    started = time.monotonic()
    page.locator('[aria-label="1 scheduled in default"]').wait_for(timeout=2000)
    assert time.monotonic() - started < 2.0
    assert "/admin/" in page.url  # no reload: still the same page
    page.wait_for_timeout(1500)  # the worker's per-minute counts reach the store
    page.reload()
    page.locator("#chart-throughput canvas").wait_for(timeout=5000)
    check_axe(page, "overview")
    page.goto(f"{site.base}/admin/queues/default")
    check_axe(page, "queue")
    reached = set()
    for _ in range(40):  # every action of the page is reachable with Tab
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.textContent.trim()"))
    assert {"Pause", "Cancel all 1 waiting", "Search"} <= reached, reached
    page.goto(f"{site.base}/admin/workers")
    page.locator("text=s ago").first.wait_for(timeout=5000)
    check_axe(page, "workers")
    page.goto(f"{site.base}/admin/schedules")
    check_axe(page, "schedules")
    page.close()


def failed_job_page(browser: Any, site: Site, data: str) -> Any:
    """A logged-in page on a job of ``boom`` enqueued from another process, once failed."""
    job_id = site.cli("enqueue", "boom", "--data", data)
    page = login(browser, site, WRITE)
    page.goto(f"{site.base}/admin/jobs/{job_id}")
    for _ in range(50):  # until the worker has failed it
        if page.locator("#traceback").count():
            break
        page.wait_for_timeout(200)
        page.reload()
    return page


def test_a_failed_jobs_page_shows_the_traceback_and_retry_works(browser: Any, site: Site) -> None:
    page = failed_job_page(browser, site, "{}")
    assert "raise ValueError" in page.locator("#traceback").inner_text()
    check_axe(page, "failed-job")
    page.get_by_role("button", name="Retry").press("Enter")  # by keyboard
    page.locator("text=queued again").wait_for(timeout=5000)
    page.locator("li:has-text('job.failed')").nth(1).wait_for(timeout=10_000)  # ran again
    page.close()


def test_a_failed_jobs_payload_is_edited_and_retried_by_keyboard(browser: Any, site: Site) -> None:
    page = failed_job_page(browser, site, '{"to": "ada@exmaple.com"}')
    page.locator("summary", has_text="Edit the payload and retry").focus()
    page.keyboard.press("Enter")  # opens the form
    page.locator("#edit-data").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type('["not", "an object"]')
    page.keyboard.press("Tab")  # to "Retry with this payload"
    page.keyboard.press("Enter")
    error = page.locator("#edit-error")
    error.wait_for(timeout=5000)
    assert "invalid payload for task 'boom'" in error.inner_text()
    assert page.locator("#edit-data").input_value() == '["not", "an object"]'  # kept
    check_axe(page, "edit-payload")
    page.locator("#edit-data").fill('{"to": "ada@example.com"}')
    page.get_by_role("button", name="Retry with this payload").press("Enter")
    page.locator("text=payload changed and queued again").wait_for(timeout=5000)
    page.locator("li:has-text('job.failed')").nth(1).wait_for(timeout=10_000)  # ran again
    assert "payload changed by dashboard (write token" in page.content()
    assert '"to": "ada@example.com"' in page.locator("#payload").inner_text()
    page.close()


def test_a_running_jobs_progress_bar_and_log_move(browser: Any, site: Site) -> None:
    job_id = site.cli("enqueue", "crawl", "--data", "{}")
    page = login(browser, site, WRITE)
    page.goto(f"{site.base}/admin/jobs/{job_id}")
    bar = page.locator("progress#progress")
    bar.wait_for(timeout=5000)
    first = float(bar.get_attribute("value") or 0)
    lines = page.locator("#log li").count()
    deadline = time.monotonic() + 5
    while float(page.locator("progress#progress").get_attribute("value") or 0) <= first:
        assert time.monotonic() < deadline, "the progress bar did not move"
        page.wait_for_timeout(200)
    assert page.locator("#log li").count() > lines  # log lines arrive without a reload
    check_axe(page, "job")
    page.close()


def test_the_hooks_page_shows_a_parked_event_and_replay_answers(browser: Any, site: Site) -> None:
    site.cli("enqueue", "signup", "--data", '{"user": "mallory", "password": "hunter2"}')
    page = login(browser, site, WRITE)
    page.locator("#hooks tr[data-group=app]").wait_for(timeout=5000)  # the overview's panel
    page.get_by_role("link", name="Hooks", exact=True).click()
    for _ in range(50):  # until the listener has parked the event
        if page.locator("text=ledger database is down").count():
            break
        page.wait_for_timeout(200)
        page.reload()
    assert "raise ConnectionError" in page.locator("pre.traceback").first.text_content() or ""
    assert "hunter2" not in page.content()
    check_axe(page, "hooks")
    page.get_by_role("button", name="Replay").first.press("Enter")  # the hook fails again
    page.locator("text=replay failed, still parked").wait_for(timeout=5000)
    page.close()


def test_a_flow_runs_graph_renders_and_turns_green_step_by_step(browser: Any, site: Site) -> None:
    page = login(browser, site, WRITE)
    page.get_by_role("link", name="Flows", exact=True).click()
    page.fill("#data-order", '{"id": 7, "total": 30}')
    page.locator("li[data-flow=order]").get_by_role("button", name="Start").click()
    page.locator("text=run of order started").wait_for(timeout=5000)
    assert "/admin/flows/runs/" in page.url
    steps = ["receive", "charge", "reserve", "ship"]
    assert page.locator("#graph g.node").count() == 4
    seen: list[tuple[str, ...]] = []  # each distinct set of completed steps, in order
    deadline = time.monotonic() + 30
    while len(seen) == 0 or len(seen[-1]) < 4:
        assert time.monotonic() < deadline, f"the graph did not turn green: {seen}"
        done = tuple(
            s
            for s in steps
            if page.locator(f'#graph g[data-step="{s}"]').get_attribute("data-state") == "completed"
        )
        if not seen or seen[-1] != done:
            seen.append(done)
        page.wait_for_timeout(150)
    # No reload: the page's fragment refreshed; receive went green before ship did.
    firsts = [s for s in seen if s]
    assert firsts[0] == ("receive",), seen
    assert len(firsts) >= 3, seen  # receive, then charge and reserve, then ship
    page.locator("#run-state:has-text('completed')").wait_for(timeout=5000)
    assert page.locator('#graph g[data-step="ship"] text').first.text_content() == "ship ⋈ join"
    check_axe(page, "flow")
    page.get_by_role("link", name="flow order").click()
    page.locator('[aria-label="1 completed run(s) of order"]').wait_for(timeout=5000)
    check_axe(page, "flows")
    page.close()


def test_a_waiting_runs_page_sits_still_then_follows_the_signal_live(
    browser: Any, site: Site
) -> None:
    """The run page follows the event stream (no polling): nothing is fetched while nothing
    happens, and the signal's effect shows without a reload."""
    page = login(browser, site, WRITE)
    page.get_by_role("link", name="Flows", exact=True).click()
    page.fill("#data-approval", '{"who": "ada"}')
    page.locator("li[data-flow=approval]").get_by_role("button", name="Start").click()
    page.locator("text=run of approval started").wait_for(timeout=5000)
    page.locator('#graph g[data-step="approve"][data-state="waiting"]').wait_for(timeout=10_000)
    check_axe(page, "flow-waiting")
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/parts/flows/runs/" in r.url else None)
    page.wait_for_timeout(3000)
    assert len(fetched) <= 1, fetched  # polling would have fetched the run three times
    auth = {"Authorization": f"Bearer {WRITE}"}
    r = httpx.post(f"{site.base}/api/signals/approved", json={"ok": True}, headers=auth)
    assert r.status_code == 200, r.text
    page.locator("#run-state:has-text('completed')").wait_for(timeout=10_000)
    assert page.locator('#graph g[data-step="approve"]').get_attribute("data-state") == "completed"
    assert fetched, "the page changed without fetching its run: reloaded?"
    page.close()


# Holds the queues panel's first reload that shows the queue "held" 2 s in the browser (a
# slow server): its request is in flight while the next change notice comes.
HOLD_FIRST_RELOAD = """() => {
  const send = XMLHttpRequest.prototype.send;
  window.held = 0;
  XMLHttpRequest.prototype.send = function (...args) {
    const xhr = this, loaded = xhr.onload;
    if (!loaded) { return send.apply(xhr, args); }
    xhr.onload = function (...a) {
      if (window.held > 0 || !xhr.responseText.includes(' in held"')) {
        return loaded.apply(xhr, a);
      }
      window.held = 1;
      setTimeout(() => {
        loaded.apply(xhr, a);
        window.shown = document.body.innerHTML.includes('"1 scheduled in held"');
        window.held = 2;
      }, 2000);
    };
    return send.apply(xhr, args);
  };
}"""


def test_a_change_during_a_slow_reload_shows_once_that_reload_is_in(
    browser: Any, site: Site
) -> None:
    """htmx queues a trigger that comes while the region's request is in flight, on the
    region that the response then swaps out: the queued request is never sent."""
    page = login(browser, site, WRITE)  # the overview: its queues panel is live
    page.evaluate(HOLD_FIRST_RELOAD)
    auth = {"Authorization": f"Bearer {WRITE}"}
    enqueue = f"{site.base}/api/tasks/signup/jobs?delay=3600&queue=held"
    assert httpx.post(enqueue, json={}, headers=auth).status_code == 202
    page.wait_for_function("window.held === 1", timeout=10_000)  # read, answer held
    assert httpx.post(enqueue, json={}, headers=auth).status_code == 202
    page.wait_for_function("window.held === 2", timeout=10_000)
    assert page.evaluate("window.shown")  # the held answer, from before the second job
    page.locator('[aria-label="2 scheduled in held"]').wait_for(timeout=10_000)
    page.close()


def test_read_only_shows_no_action_and_refuses_a_forged_post(browser: Any, site: Site) -> None:
    job_id = site.cli("enqueue", "boom", "--data", "{}")
    page = login(browser, site, READ)
    paths = ["/admin/", "/admin/queues/default", f"/admin/jobs/{job_id}", "/admin/schedules"]
    for path in [*paths, "/admin/hooks", "/admin/flows"]:
        page.goto(site.base + path)
        assert page.locator("form[method=post]:not([action$='/logout'])").count() == 0, path
        assert page.locator("button:has-text('Retry'), button:has-text('Pause')").count() == 0
    status = page.evaluate(
        """async () => (await fetch('/admin/queues/default/pause', {method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded'},
        body: 'csrf=forged'})).status"""
    )
    assert status == 403
    page.close()
