"""Edit before retry: a failed job's page changes its payload and queues it again, checked
as the task checks input, recorded in its events; and the same through the REST API."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

import workhorse.http
from tests.contract.support import settled_log
from tests.dashboard.conftest import WRITE_TOKEN, Board
from workhorse.job import JobState


class Invite(BaseModel):
    email: str
    api_key: str


async def failed_job(board: Board, task: str, data: Any) -> str:
    handle = await board.app.enqueue(task, data)
    await board.app.start_worker()
    job = await board.app.client.wait(handle.id, 10)
    await board.app.stop_workers()
    assert job.state is JobState.FAILED
    return handle.id


def invite_task(board: Board) -> None:
    @board.app.task(retries=0)
    async def invite(data: Invite) -> None:
        raise ValueError("the mail server said no")


async def test_a_failed_jobs_payload_is_changed_and_retried_and_the_edit_recorded(
    board: Board,
) -> None:
    invite_task(board)
    job_id = await failed_job(board, "invite", {"email": "ada@exmaple.com", "api_key": "k-123"})
    await board.login()
    page = await board.http.get(f"/admin/jobs/{job_id}")
    assert "Edit the payload and retry" in page.text
    assert "k-123" not in page.text  # the form shows the payload redacted
    csrf = await board.csrf(f"/admin/jobs/{job_id}")

    # The secret stays as it was (***), the typo is fixed.
    typed = '{"email": "ada@example.com", "api_key": "***"}'
    r = await board.http.post(f"/admin/jobs/{job_id}/edit", data={"csrf": csrf, "data": typed})
    assert r.status_code == 303 and "payload%20changed" in r.headers["location"]
    job = await board.app.client.get_job(job_id)
    assert job is not None and job.state is JobState.QUEUED
    assert job.data == {"email": "ada@example.com", "api_key": "k-123"}

    page = await board.http.get(f"/admin/jobs/{job_id}")
    found = re.search(
        r"payload changed by dashboard \(write token, session [0-9a-f]{8}\)", page.text
    )
    assert found, page.text
    before = re.search(r'<pre class="previous">(.*?)</pre>', page.text, re.S)
    assert before and "ada@exmaple.com" in before.group(1)  # the old payload, kept
    assert "k-123" not in page.text  # and redacted


async def test_a_payload_the_task_refuses_shows_the_reason_on_the_form(board: Board) -> None:
    invite_task(board)
    job_id = await failed_job(board, "invite", {"email": "a@example.com", "api_key": "k"})
    await board.login()
    csrf = await board.csrf(f"/admin/jobs/{job_id}")
    for typed, reason in [
        ('{"email": "b@example.com"}', "invalid payload for task &#39;invite&#39;"),
        ('{"email": ', "not JSON"),
    ]:
        r = await board.http.post(f"/admin/jobs/{job_id}/edit", data={"csrf": csrf, "data": typed})
        assert r.status_code == 422, r.text
        assert reason in r.text and 'role="alert"' in r.text
        assert "&#34;email&#34;: " in r.text  # the text as typed, to fix it
    job = await board.app.client.get_job(job_id)
    assert job is not None and job.state is JobState.FAILED
    assert job.data == {"email": "a@example.com", "api_key": "k"}


async def test_a_job_no_longer_failed_is_not_changed(board: Board) -> None:
    job_id = await failed_job(board, "boom", {"n": 1})
    await board.login()
    csrf = await board.csrf(f"/admin/jobs/{job_id}")
    assert await board.app.retry(job_id)  # someone else retried it meanwhile
    r = await board.http.post(f"/admin/jobs/{job_id}/edit", data={"csrf": csrf, "data": "{}"})
    assert r.status_code == 303 and "not%20retried" in r.headers["location"]
    job = await board.app.client.get_job(job_id)
    assert job is not None and job.data == {"n": 1}


async def test_the_rest_api_retries_with_a_new_payload(board: Board) -> None:
    invite_task(board)
    job_id = await failed_job(board, "invite", {"email": "a@example.com", "api_key": "k"})
    api = FastAPI()
    api.include_router(workhorse.http.router(board.app))
    auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        url = f"/api/jobs/{job_id}/retry"
        r = await http.post(url, json={"data": {"email": "b@example.com"}}, headers=auth)
        assert r.status_code == 422 and "invalid payload for task 'invite'" in r.text
        fixed = {"email": "b@example.com", "api_key": "k2"}
        r = await http.post(url, json={"data": fixed}, headers=auth)
        assert r.status_code == 200 and r.json()["state"] == "queued", r.text
    job = await board.app.client.get_job(job_id)
    assert job is not None and job.data == fixed
    events = await settled_log(await board.app.client.store(), job_id)
    assert events[-1].data["edited"] == {
        "by": "api (write token)",
        "previous": {"email": "a@example.com", "api_key": "k"},
    }
