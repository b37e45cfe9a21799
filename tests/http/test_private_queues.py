"""A server's private call queue (``http.<random>``) stays out of queue listings, while
the call's record stays readable by id and in its task's listing."""

from __future__ import annotations

from tests.http.conftest import READ, WRITE, Served
from workhorse.observability.collector import store_metrics


async def test_a_call_queue_is_not_listed_but_its_record_is_readable(served: Served) -> None:
    r = await served.http.post("/api/send-email", json={"to": "p@q.r"}, headers=WRITE)
    assert r.status_code == 200
    job_id = r.headers["workhorse-job-id"]
    await served.http.post("/api/tasks/noop/jobs", json={}, headers=WRITE)

    names = [q["name"] for q in (await served.http.get("/api/queues", headers=READ)).json()]
    assert "default" in names
    assert not [n for n in names if n.startswith("http.")]
    assert not [q for q in await served.app.counts() if q.startswith("http.")]
    depth = (await store_metrics(served.app.client)).decode()
    assert 'queue="default"' in depth and 'queue="http.' not in depth

    job = (await served.http.get(f"/api/jobs/{job_id}", headers=READ)).json()
    assert (job["state"], job["http_call"]) == ("completed", True)
    listed = (await served.http.get("/api/jobs?task=send_email", headers=READ)).json()
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    # Named, the private queue is still counted: an operator can look at it on purpose.
    assert (await served.app.counts([job["queue"]]))[job["queue"]]["completed"] == 1
