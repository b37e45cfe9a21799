"""Every REST route on SQLite, Redis and PostgreSQL, through the ASGI transport."""

from __future__ import annotations

import asyncio

from tests.http.conftest import READ, WRITE, Served


async def test_enqueue_answers_202_with_the_id_and_a_location_then_the_job_reads_back(
    served: Served,
) -> None:
    r = await served.http.post(
        "/api/tasks/send_email_queued/jobs?priority=5&delay=60", json={"to": "a@b.c"}, headers=WRITE
    )
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "created"
    assert r.headers["location"] == f"/api/jobs/{body['id']}"
    job = (await served.http.get(r.headers["location"], headers=READ)).json()
    assert (job["task"], job["state"], job["priority"]) == ("send_email_queued", "scheduled", 5)
    assert job["data"] == {"to": "a@b.c", "subject": "hello"}
    assert job["http_call"] is False


async def test_enqueue_refuses_a_bad_payload_and_an_unknown_task(served: Served) -> None:
    r = await served.http.post("/api/tasks/send_email_queued/jobs", json={"x": 1}, headers=WRITE)
    assert (r.status_code, r.json()["error"]["type"]) == (422, "PayloadError")
    r = await served.http.post("/api/tasks/nope/jobs", json={}, headers=WRITE)
    assert r.status_code == 404
    assert "send_email_queued" in r.json()["error"]["message"]  # it lists the known tasks


async def test_wait_answers_200_with_the_result_in_time_else_202(served: Served) -> None:
    r = await served.http.post("/api/tasks/noop/jobs?wait=0.2", json={}, headers=WRITE)
    assert r.status_code == 202  # no worker yet: the wait ends, the job is still queued
    await served.app.start_worker()
    r = await served.http.post(
        "/api/tasks/send_email_both/jobs?wait=10", json={"to": "w@x.y"}, headers=WRITE
    )
    assert r.status_code == 200
    assert r.json()["state"] == "completed"
    assert r.json()["result"] == {"sent": True, "to": "w@x.y"}


async def test_get_job_has_an_etag_and_answers_304_while_unchanged(served: Served) -> None:
    job_id = (await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)).json()["id"]
    first = await served.http.get(f"/api/jobs/{job_id}", headers=READ)
    etag = first.headers["etag"]
    same = await served.http.get(f"/api/jobs/{job_id}", headers={**READ, "If-None-Match": etag})
    assert (same.status_code, same.content) == (304, b"")
    await served.app.cancel(job_id)
    changed = await served.http.get(f"/api/jobs/{job_id}", headers={**READ, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["state"] == "cancelled"
    missing = await served.http.get("/api/jobs/0123456789abcdef", headers=READ)
    assert missing.status_code == 404


async def test_logs_and_events_of_a_job(served: Served) -> None:
    r = await served.http.post("/api/send-email", json={"to": "l@o.g"}, headers=WRITE)
    job_id = r.headers["workhorse-job-id"]
    logs = (await served.http.get(f"/api/jobs/{job_id}/logs", headers=READ)).json()
    assert [(x["message"], x["fields"]) for x in logs] == [("sending", {"to": "l@o.g"})]
    # PostgreSQL shows an event once every older transaction on the server has ended.
    for _ in range(100):
        events = (await served.http.get(f"/api/jobs/{job_id}/events", headers=READ)).json()
        if events and events[-1]["type"] == "job.completed":
            break
        await asyncio.sleep(0.05)
    assert [e["type"] for e in events][-1] == "job.completed"
    assert {e["job_id"] for e in events} == {job_id}


async def test_cancel_and_retry(served: Served) -> None:
    job_id = (await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)).json()["id"]
    r = await served.http.post(f"/api/jobs/{job_id}/cancel", headers=WRITE)
    assert r.json() == {"ok": True, "state": "cancelled", "deleted": None}
    r = await served.http.post(f"/api/jobs/{job_id}/retry", headers=WRITE)
    assert (r.status_code, r.json()["state"]) == (200, "queued")
    r = await served.http.post(f"/api/jobs/{job_id}/retry", headers=WRITE)
    assert r.status_code == 409  # queued again: nothing to retry
    r = await served.http.post("/api/jobs/0123456789abcdef/cancel", headers=WRITE)
    assert r.status_code == 404


async def test_list_jobs_filters_and_pages_by_cursor_without_gaps_or_repeats(
    served: Served,
) -> None:
    ids = set()
    for _ in range(5):
        r = await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)
        ids.add(r.json()["id"])
    await served.http.post("/api/tasks/send_email_both/jobs", json={"to": "a"}, headers=WRITE)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"task": "noop", "state": "queued", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page = (await served.http.get("/api/jobs", params=params, headers=READ)).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert (await served.http.get("/api/jobs?cursor=!!", headers=READ)).status_code == 422
    far = await served.http.get("/api/jobs?cursor=9999999999999:ab", headers=READ)
    assert (far.status_code, far.json()["error"]["type"]) == (400, "BadCursor")
    assert (await served.http.get("/api/jobs?state=lost", headers=READ)).status_code == 422


async def test_queues_counts_pause_resume_and_purge(served: Served) -> None:
    job_id = (await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)).json()["id"]
    assert (await served.http.post("/api/queues/default/pause", headers=WRITE)).status_code == 200
    queues = {q["name"]: q for q in (await served.http.get("/api/queues", headers=READ)).json()}
    assert queues["default"]["paused"] is True
    assert queues["default"]["counts"]["queued"] == 1
    assert (await served.http.post("/api/queues/default/resume", headers=WRITE)).status_code == 200
    assert not await served.app.is_paused("default")
    await served.app.cancel(job_id)
    r = await served.http.delete("/api/queues/default/jobs?state=cancelled&keep=0", headers=WRITE)
    assert r.json()["deleted"] == 1
    assert await served.app.get_job(job_id) is None
    r = await served.http.delete("/api/queues/default/jobs?state=queued&keep=0", headers=WRITE)
    assert r.status_code == 422  # purge never deletes live jobs


async def test_schedules_add_list_run_now_and_remove(served: Served) -> None:
    r = await served.http.put(
        "/api/schedules/nightly",
        json={"task": "noop", "cron": "0 3 * * *", "data": {"n": 1}},
        headers=WRITE,
    )
    assert r.status_code == 200
    assert r.json()["cron"] == "0 3 * * *"
    listed = (await served.http.get("/api/schedules", headers=READ)).json()
    assert [s["name"] for s in listed] == ["nightly"]
    r = await served.http.post("/api/schedules/nightly/run", headers=WRITE)
    assert r.status_code == 202
    job = await served.app.get_job(r.json()["id"])
    assert job is not None and job.data == {"n": 1}
    bad = await served.http.put(
        "/api/schedules/bad", json={"task": "noop", "cron": "every day"}, headers=WRITE
    )
    assert bad.status_code == 400
    assert (await served.http.delete("/api/schedules/nightly", headers=WRITE)).status_code == 200
    assert (await served.http.delete("/api/schedules/nightly", headers=WRITE)).status_code == 404


async def test_workers_and_health(served: Served) -> None:
    worker = await served.app.start_worker()
    assert worker is not None
    for _ in range(100):
        workers = (await served.http.get("/api/workers", headers=READ)).json()
        if workers:
            break
        await asyncio.sleep(0.05)
    assert workers and "default" in workers[0]["queues"]
    health = (await served.http.get("/api/health")).json()
    assert health["ok"] is True


async def test_result_answers_at_once_when_finished_202_while_running(served: Served) -> None:
    job_id = (await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)).json()["id"]
    r = await served.http.get(f"/api/jobs/{job_id}/result?wait=0.1", headers=READ)
    assert (r.status_code, r.json()["state"]) == (202, "queued")  # no worker yet
    await served.app.start_worker()
    r = await served.http.get(f"/api/jobs/{job_id}/result?wait=10", headers=READ)
    assert (r.status_code, r.json()["state"]) == (200, "completed")
    r = await served.http.get(f"/api/jobs/{job_id}/result", headers=READ)  # finished: no wait
    assert r.status_code == 200


async def test_concurrent_enqueues_each_get_their_own_job_and_a_singleton_its_live_one(
    served: Served,
) -> None:
    """Enqueues in flight together are written in one batch: each still gets its answer."""
    replies = await asyncio.gather(
        *(served.http.post("/api/tasks/noop/jobs", json={"n": n}, headers=WRITE) for n in range(20))
    )
    ids = [r.json()["id"] for r in replies]
    assert len(set(ids)) == 20
    for n, job_id in enumerate(ids):
        job = await served.app.get_job(job_id)
        assert job is not None and job.data == {"n": n}
    first, second = await asyncio.gather(
        *(served.http.post("/api/tasks/one_at_a_time/jobs", json={}, headers=WRITE) for _ in "ab")
    )
    statuses = sorted([first.json()["status"], second.json()["status"]])
    assert statuses == ["created", "duplicate"]
    assert first.json()["id"] == second.json()["id"]


async def test_a_job_enqueued_between_pages_shifts_nothing(served: Served) -> None:
    """The cursor is a keyset (the page's last job), not an offset: a new job neither
    repeats one on the next page nor hides one."""
    ids = []
    for _ in range(4):
        r = await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)
        ids.append(r.json()["id"])
        await asyncio.sleep(0.002)  # distinct creation times
    first = (await served.http.get("/api/jobs?task=noop&limit=2", headers=READ)).json()
    await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)
    cursor = first["next_cursor"]
    second = (
        await served.http.get(f"/api/jobs?task=noop&limit=2&cursor={cursor}", headers=READ)
    ).json()
    assert [j["id"] for j in first["jobs"] + second["jobs"]] == ids[::-1]
