"""A task as an endpoint: each mode, body validation, errors, timeout, the job record."""

from __future__ import annotations

import pytest

from tests.http.conftest import READ, WRITE, Served, build
from workhorse.errors import ConfigError


async def test_an_http_task_answers_with_its_result_and_keeps_a_job_record(served: Served) -> None:
    r = await served.http.post("/api/send-email", json={"to": "a@b.c"}, headers=WRITE)
    assert r.status_code == 200
    assert r.json() == {"sent": True, "to": "a@b.c"}
    job_id = r.headers["workhorse-job-id"]
    # The call's record shows in the store like a job's: its logs, progress and outcome.
    job = await served.app.get_job(job_id)
    assert job is not None
    assert job.state == "completed"
    assert job.progress == 50
    assert [line["message"] for line in job.logs] == ["sending"]
    shown = (await served.http.get(f"/api/jobs/{job_id}", headers=READ)).json()
    assert shown["http_call"] is True
    assert shown["result"] == {"sent": True, "to": "a@b.c"}


async def test_a_both_task_is_callable_and_enqueueable_a_queue_task_has_no_route(
    served: Served,
) -> None:
    r = await served.http.post(
        "/api/tasks/send_email_both/call", json={"to": "x@y.z"}, headers=WRITE
    )
    assert (r.status_code, r.json()) == (200, {"sent": True, "to": "x@y.z"})
    r = await served.http.post(
        "/api/tasks/send_email_both/jobs", json={"to": "x@y.z"}, headers=WRITE
    )
    assert r.status_code == 202
    r = await served.http.post(
        "/api/tasks/send_email_queued/call", json={"to": "x@y.z"}, headers=WRITE
    )
    assert r.status_code in (404, 405)
    paths = (await served.http.get("/openapi.json")).json()["paths"]
    assert "/api/send-email" in paths
    assert "/api/tasks/send_email_both/call" in paths
    assert "/api/tasks/send_email_queued/call" not in paths


async def test_an_http_only_task_is_never_enqueued(served: Served) -> None:
    r = await served.http.post("/api/tasks/send_email/jobs", json={"to": "a@b.c"}, headers=WRITE)
    assert r.status_code == 409
    assert r.json()["error"]["type"] == "NotQueued"
    with pytest.raises(ConfigError, match="mode='http'"):
        await served.app.enqueue("send_email", {"to": "a@b.c"})


async def test_a_body_that_does_not_validate_is_a_422_naming_the_field(served: Served) -> None:
    r = await served.http.post("/api/send-email", json={"subject": "no to"}, headers=WRITE)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["type"] == "ValidationError"
    assert error["fields"][0]["loc"] == ["body", "to"]
    r = await served.http.post(
        "/api/send-email",
        content=b"{not json",
        headers={**WRITE, "content-type": "application/json"},
    )
    assert r.status_code == 422


async def test_a_failing_handler_is_a_500_with_type_and_message_and_no_traceback_when_open(
    served: Served,
) -> None:
    r = await served.http.post("/api/tasks/boom/call", json={})
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "the mail server said no"
    assert "traceback" not in error  # boom's route is open: its caller is not known
    job = await served.app.get_job(error["job_id"])
    assert job is not None and job.state == "failed"


async def test_timeout_applies_and_answers_504(served: Served) -> None:
    r = await served.http.post("/api/tasks/slow/call", json={}, headers=WRITE)
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "TimeoutError"


async def test_a_get_endpoint_takes_its_payload_from_the_query(served: Served) -> None:
    r = await served.http.get("/api/lookup", params={"q": "abc"}, headers=READ)
    assert (r.status_code, r.json()) == (200, {"echo": "abc"})


def test_mode_and_http_are_checked_at_definition() -> None:
    app = build()
    with pytest.raises(ConfigError, match="mode must be one of"):
        app.task(mode="sometimes")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="set mode='http'"):
        app.task(name="q", http={"path": "/x"})(lambda: None)
    with pytest.raises(ConfigError, match="http path must start with '/'"):
        app.task(name="p", mode="http", http={"path": "x"})(lambda: None)
    with pytest.raises(ConfigError, match="http method must be one of"):
        app.task(name="m", mode="http", http={"method": "FETCH"})(lambda: None)
    with pytest.raises(ConfigError, match="http auth must be"):
        app.task(name="a", mode="http", http={"auth": "admin"})(lambda: None)
    with pytest.raises(ConfigError, match="unknown http option"):
        app.task(name="u", mode="http", http={"schema": {}})(lambda: None)
    with pytest.raises(ConfigError, match="cron= and singleton="):
        app.task(name="c", mode="http", cron="* * * * *")(lambda: None)


def test_job_files_declare_mode_and_http(tmp_path: pytest.TempPathFactory) -> None:
    folder = tmp_path / "jobs"  # type: ignore[operator]
    folder.mkdir()
    (folder / "notify.py").write_text(
        'mode = "both"\n'
        'http = {"path": "/api/send-email", "method": "POST", "auth": True}\n'
        "async def handler(data: dict) -> dict:\n"
        '    return {"sent": True}\n'
    )
    app = build()
    (task,) = app.discover(folder)
    assert task.defaults.mode == "both"
    assert task.defaults.http is not None and task.defaults.http.path == "/api/send-email"


async def test_concurrent_calls_each_get_their_own_result_and_record(served: Served) -> None:
    """Calls in flight together share enqueues, claims and finishes: none gets another's."""
    import asyncio

    replies = await asyncio.gather(
        *(
            served.http.post("/api/send-email", json={"to": f"u{n}@b.c"}, headers=WRITE)
            for n in range(20)
        )
    )
    assert [r.json()["to"] for r in replies] == [f"u{n}@b.c" for n in range(20)]
    ids = {r.headers["workhorse-job-id"] for r in replies}
    assert len(ids) == 20
    for r in replies:
        job = await served.app.get_job(r.headers["workhorse-job-id"])
        assert job is not None and job.result == r.json()


async def test_the_router_mounts_in_a_users_fastapi_app_and_keeps_its_error_shape() -> None:
    import httpx
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from workhorse.http import router

    app = build()
    user = FastAPI()

    @user.exception_handler(422)
    async def mine(request: object, exc: Exception) -> PlainTextResponse:  # the user's own
        return PlainTextResponse("user's handler", 418)

    @user.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    user.include_router(router(app))
    async with (
        app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=user), base_url="http://t") as c,
    ):
        assert (await c.get("/hello")).json() == {"hello": "world"}
        r = await c.post("/api/send-email", json={"to": "a@b.c"}, headers=WRITE)
        assert (r.status_code, r.json()) == (200, {"sent": True, "to": "a@b.c"})
        r = await c.post("/api/send-email", json={}, headers=WRITE)
        assert (r.status_code, r.json()["error"]["type"]) == (422, "ValidationError")


def test_a_task_path_that_would_hide_a_rest_route_is_refused() -> None:
    from workhorse.http import create_app

    app = build()
    app.task(name="shadow", mode="http", http={"path": "/api/tasks/noop/jobs"})(lambda: None)
    with pytest.raises(ConfigError, match="also the REST API's route"):
        create_app(app)
