"""Every page renders on SQLite, Redis and PostgreSQL from the store's own records, with
secrets redacted; actions change the store; searches and bulk actions cover the filter."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.dashboard.conftest import Board
from workhorse.dashboard import queries
from workhorse.job import Event, new_job_id
from workhorse.observability import stats


async def missing_events(board: Board, job_id: str) -> list[str]:
    """The run's events the job's page does not show within 5 s (PostgreSQL shows an event
    once every older transaction has ended: on a busy server that takes a moment)."""
    kinds = ("job.queued", "job.started", "job.completed")
    deadline = time.monotonic() + 5
    while True:
        page = (await board.http.get(f"/admin/jobs/{job_id}")).text
        missing = [kind for kind in kinds if kind not in page]
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.1)


async def finish(board: Board, *ids: str) -> None:
    for job_id in ids:
        await board.app.client.wait(job_id, 10)


async def test_every_page_renders_with_the_stores_jobs(board: Board) -> None:
    await board.login()
    ok = await board.app.enqueue("signup", {"user": "ada", "password": "hunter2"})
    bad = await board.app.enqueue("boom", {})
    await board.app.client.add_schedule("nightly", "signup", "0 3 * * *", {"user": "cron"})
    await board.app.start_worker()
    await finish(board, ok.id, bad.id)

    overview = await board.http.get("/admin/")
    assert overview.status_code == 200
    assert 'href="/admin/queues/default"' in overview.text
    assert "Last hour" in overview.text and "Workers" in overview.text

    queue = await board.http.get("/admin/queues/default")
    assert ok.id in queue.text and bad.id in queue.text
    failed = await board.http.get("/admin/queues/default?state=failed")
    assert bad.id in failed.text and ok.id not in failed.text
    assert "ValueError: the mail server said no" in failed.text  # why, without a click

    job = await board.http.get(f"/admin/jobs/{ok.id}")
    assert job.status_code == 200
    assert "signing up" in job.text and "<code>user=ada</code>" in job.text
    for secret in ("hunter2", "result-secret-xyz", "log-secret-123"):  # payload, result, log
        assert secret not in job.text
    assert "***" in job.text

    failure = await board.http.get(f"/admin/jobs/{bad.id}")
    assert "the mail server said no" in failure.text
    assert 'id="traceback"' in failure.text and "raise ValueError" in failure.text

    schedules = await board.http.get("/admin/schedules")
    assert "nightly" in schedules.text and "0 3 * * *" in schedules.text
    assert schedules.text.count(" 03:00:00 UTC") == 3  # the next three runs
    workers = await board.http.get("/admin/workers")
    assert board.app.client.settings.queues[0] in workers.text
    assert "s ago" in workers.text  # a live worker with its last heartbeat

    # The producer's enqueue counts and the worker's finish counts reach the store within a
    # second each (their stats writers flush apart).
    async def counted(kind: str) -> int:
        counts = [
            stats.per_minute(board.app.client, kind, "default", t, 2) for t in ("signup", "boom")
        ]
        return sum(n for one in await asyncio.gather(*counts) for _, n in one)

    deadline = time.monotonic() + 5
    while (await counted("enqueued") < 2 or await counted("completed") < 1) and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)
    charts = (await board.http.get("/admin/charts.json")).json()
    assert len(charts["t"]) == 60 and len(charts["completed"]) == 60
    assert sum(charts["enqueued"]) == 2 and sum(charts["completed"]) == 1  # signup; boom failed


async def test_retry_of_a_failed_job_and_the_bulk_retry_of_a_filter(board: Board) -> None:
    await board.login()
    bad = [await board.app.enqueue("boom", {"n": n}) for n in range(3)]
    await board.app.start_worker()
    await finish(board, *(h.id for h in bad))
    csrf = await board.csrf(f"/admin/jobs/{bad[0].id}")
    r = await board.http.post(f"/admin/jobs/{bad[0].id}/retry", data={"csrf": csrf})
    assert r.status_code == 303
    await asyncio.sleep(0)  # the job is queued again; the worker fails it once more
    await finish(board, bad[0].id)
    job = await board.app.client.get_job(bad[0].id)
    assert job is not None and job.attempts == 1 and job.state == "failed"

    r = await board.http.post("/admin/queues/default/retry-failed", data={"csrf": csrf})
    assert r.status_code == 303 and "3%20failed" in r.headers["location"]


async def test_search_finds_payload_text_and_an_exact_id(board: Board) -> None:
    await board.login()
    ada = await board.app.enqueue("signup", {"user": "ada-lovelace"})
    bob = await board.app.enqueue("signup", {"user": "bob"})
    r = await board.http.get("/admin/queues/default?q=lovelace")
    assert ada.id in r.text and bob.id not in r.text
    r = await board.http.get(f"/admin/queues/default?q={bob.id}")
    assert bob.id in r.text and ada.id not in r.text


async def test_pause_resume_cancel_and_purge(board: Board) -> None:
    await board.login()
    waiting = [await board.app.enqueue("signup", {"user": str(n)}) for n in range(3)]
    csrf = await board.csrf("/admin/queues/default")
    await board.http.post("/admin/queues/default/pause", data={"csrf": csrf})
    assert await board.app.client.is_paused("default")
    await board.http.post("/admin/queues/default/resume", data={"csrf": csrf})
    assert not await board.app.client.is_paused("default")
    r = await board.http.post("/admin/queues/default/cancel-queued", data={"csrf": csrf})
    assert "3%20waiting" in r.headers["location"]
    for h in waiting:
        job = await board.app.client.get_job(h.id)
        assert job is not None and job.state == "cancelled"
    await board.http.post("/admin/queues/default/purge", data={"csrf": csrf})
    assert await board.app.client.get_job(waiting[0].id) is None


async def test_schedules_add_run_now_and_remove(board: Board) -> None:
    await board.login()
    csrf = await board.csrf("/admin/schedules")
    r = await board.http.post(
        "/admin/schedules",
        data={"csrf": csrf, "name": "hourly", "task": "signup", "cron": "0 * * * *", "data": "{}"},
    )
    assert r.status_code == 303
    assert [s.name for s in await board.app.client.schedules()] == ["hourly"]
    r = await board.http.post("/admin/schedules/hourly/run", data={"csrf": csrf})
    assert r.headers["location"].startswith("/admin/jobs/")
    r = await board.http.post("/admin/schedules/hourly/remove", data={"csrf": csrf})
    assert await board.app.client.schedules() == []


async def test_the_live_follower_finds_the_newest_event_without_walking_the_log(
    board: Board,
) -> None:
    from workhorse.dashboard.live import Tail

    async def newest(at_least: int) -> int:
        """The log's newest id once it shows ``at_least`` events (stores publish an
        event to readers a moment after the write: Redis once its millisecond passed)."""
        for _ in range(100):
            page = await board.app.client.events(0, 1000)
            if len(page) >= at_least:
                return page[-1].id
            await asyncio.sleep(0.02)
        raise AssertionError(f"fewer than {at_least} events in the log")

    for n in range(5):
        await board.app.enqueue("signup", {"user": str(n)})
    fifth = await newest(5)
    tail = Tail(board.app.client, 0.01)
    assert await tail.advance() == fifth
    await board.app.enqueue("signup", {"user": "late"})
    sixth = await newest(6)
    await asyncio.sleep(0.02)
    assert await tail.advance() == sixth  # a follower moves on with the log
    assert [event_id for event_id, _ in tail.recent] == [sixth]
    assert b'"job.queued"' in tail.recent[0][1]
    assert b"late" not in tail.recent[0][1]  # no payload in a notice


async def test_charts_come_from_the_stores_per_minute_counters(board: Board) -> None:
    ok = [await board.app.enqueue("signup", {"user": str(n)}) for n in range(3)]
    bad = await board.app.enqueue("boom", {})
    await board.login()
    await board.app.start_worker()
    await finish(board, bad.id, *(h.id for h in ok))
    # The worker adds its counts to the store once a second; the charts keep a read 5 s.
    for _ in range(100):
        charts = (await board.http.get("/admin/charts.json?queue=default")).json()
        if sum(charts["completed"]) == 3 and sum(charts["failed"]) == 1:
            break
        await asyncio.sleep(0.1)
    assert (sum(charts["completed"]), sum(charts["failed"])) == (3, 1)
    series = zip(charts["completed"], charts["failed"], charts["failure_rate"], strict=True)
    for d, f, rate in series:
        assert rate == (None if d + f == 0 else round(100 * f / (d + f), 1))
    assert any(w is not None and w >= 0 for w in charts["wait_ms"])
    other = (await board.http.get("/admin/charts.json?queue=priority")).json()
    assert sum(other["completed"]) == 0


async def test_an_http_calls_record_is_not_retried(board: Board) -> None:
    """No worker consumes a server's call queue: a retried record would wait forever."""
    await board.login()
    call = await board.app.client.enqueue("boom", {}, queue="http.0123abcd")
    await board.app.cancel(call.id)
    page = await board.http.get(f"/admin/jobs/{call.id}")
    assert 'action="/admin/jobs/' + call.id + '/retry"' not in page.text
    csrf = await board.csrf("/admin/schedules")  # the job's page has no form to read it from
    r = await board.http.post(f"/admin/jobs/{call.id}/retry", data={"csrf": csrf})
    assert "not%20retried" in r.headers["location"]
    r = await board.http.post("/admin/queues/http.0123abcd/retry-failed", data={"csrf": csrf})
    assert "not%20retried" in r.headers["location"]
    job = await board.app.client.get_job(call.id)
    assert job is not None and job.state == "cancelled"


async def test_a_call_queue_is_not_in_the_queue_list_but_its_page_counts_it(
    board: Board,
) -> None:
    await board.login()
    call = await board.app.client.enqueue("boom", {}, queue="http.0123abcd")
    await board.app.cancel(call.id)
    await board.app.enqueue("signup", {"user": "a"})
    listed = (await board.http.get("/admin/parts/queues")).text
    assert "/admin/queues/default" in listed and "http.0123abcd" not in listed
    page = (await board.http.get("/admin/queues/http.0123abcd")).text
    assert "cancelled (1)" in page


async def test_a_finished_jobs_page_lists_its_events_among_many_others(board: Board) -> None:
    """Event ids are not counts on Redis: the page finds the job's events by time."""
    await board.login()
    first = await board.app.enqueue("signup", {"user": "first"})
    await board.app.client.backend.publish(
        [Event("test.noise", new_job_id(), at=time.time()) for _ in range(300)]
    )
    await board.app.start_worker()
    await finish(board, first.id)
    # PostgreSQL's event log shows an event once every transaction older than it has ended
    # (so no reader skips one): on a busy server that can take a moment.
    missing = await missing_events(board, first.id)
    assert not missing, f"{missing} missing from the job's page"


async def test_a_queue_pages_fifty_jobs_at_a_time_and_reloads_live(
    board: Board,
) -> None:
    await board.login()
    handles = [await board.app.client.enqueue("signup", {"n": n}, delay=3600) for n in range(51)]
    first = await board.http.get("/admin/queues/default")
    older = re.search(r'href="([^"]+)" rel="next">Older jobs', first.text)
    assert older and 'rel="first"' not in first.text
    second = await board.http.get(older.group(1).replace("&amp;", "&"))
    assert "Newest jobs" in second.text and 'rel="next"' not in second.text
    on_first = {h.id for h in handles if h.id in first.text}
    on_second = {h.id for h in handles if h.id in second.text}
    assert (len(on_first), len(on_second), on_first & on_second) == (50, 1, set())
    # The list's live reload (on a change notice) shows the same jobs, not an empty list.
    part = re.search(r'<div id="jobs" hx-get="([^"]+)"', first.text)
    assert part
    live = await board.http.get(part.group(1).replace("&amp;", "&"))
    assert {h.id for h in handles if h.id in live.text} == on_first


async def test_a_jobs_page_reads_its_events_by_id_past_thousands_of_others(
    board: Board,
) -> None:
    """Its events after 2,500 other jobs' were logged (the page once read only the 2,000
    events logged from the job's creation on, and missed its start and end)."""
    await board.login()
    first = await board.app.enqueue("signup", {"user": "first"})
    for _ in range(5):
        await board.app.client.enqueue_many("signup", [{"n": n} for n in range(500)], delay=3600)
    await board.app.start_worker()
    await finish(board, first.id)
    missing = await missing_events(board, first.id)
    assert not missing, f"{missing} missing from the job's page"


def _older(page: str) -> str | None:
    found = re.search(r'href="([^"]+)" rel="next">', page)
    return found.group(1).replace("&amp;", "&") if found else None


async def test_paging_a_queue_while_new_jobs_arrive_shows_each_job_once(board: Board) -> None:
    await board.login()
    client = board.app.client
    handles = await client.enqueue_many("signup", [{"n": n} for n in range(120)], delay=3600)
    ids = {h.id for h in handles}
    path: str | None = "/admin/queues/default?state=scheduled"
    seen: list[str] = []
    pages = 0
    while path is not None:
        text = (await board.http.get(path)).text
        seen += re.findall(r'href="/admin/jobs/([0-9a-f]+)"', text)
        # Newer jobs arrive between pages: an offset would show the last ones again.
        await client.enqueue_many("signup", [{"n": -1}] * 7, delay=3600)
        path = _older(text)
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == ids


async def test_a_search_goes_on_through_older_jobs_window_by_window(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SEARCH_WINDOW", 10)
    monkeypatch.setattr(queries, "SEARCH_READ", 4)
    await board.login()
    client = board.app.client
    old = await client.enqueue("signup", {"user": "grace-hopper"}, delay=3600)
    await client.enqueue_many("signup", [{"user": f"u{n}"} for n in range(15)], delay=3600)
    first = (await board.http.get("/admin/queues/default?q=hopper")).text
    assert old.id not in first
    assert "0 match(es) among the newest 10 job(s)" in first
    older = re.search(r'href="([^"]+)" rel="next">Search older jobs', first)
    assert older and "q=hopper" in older.group(1)
    second = (await board.http.get(older.group(1).replace("&amp;", "&"))).text
    assert old.id in second
    assert "1 match(es) among the next 6 job(s)" in second
    assert 'rel="next"' not in second
