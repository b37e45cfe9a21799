"""The flow routes on the durable stores: a run started over HTTP completes and shows its
steps, runs page newest first, cancel/restart/resume, signals and signed webhooks resume
waiting steps (a bad or replayed signature is refused), and the API's auth and 404s."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import close_and_drop
from tests.http.conftest import READ, WRITE, build
from tests.http.test_auth import signed
from workhorse import Workhorse
from workhorse.backends import Backend
from workhorse.http import create_app

from ..contract.support import eventually


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def define(app: Workhorse) -> None:
    """A diamond A -> (B, C) -> D, and a flow whose second step waits for a signal and a
    third for a signed webhook."""

    @app.task(name="a", flow="diamond", entry=True)
    async def a(data: Any) -> Any:
        return {"n": data["n"]}

    @app.task(name="b", flow="diamond", subscribes=["step:a"])
    async def b(data: Any) -> Any:
        return data["n"] + 1

    @app.task(name="c", flow="diamond", subscribes=["step:a"])
    async def c(data: Any) -> Any:
        return data["n"] * 10

    @app.task(name="d", flow="diamond", subscribes=["step:b", "step:c"])
    async def d(data: Any) -> Any:
        return data["step:b"] + data["step:c"]

    @app.task(name="order", flow="paying", entry=True)
    async def order(data: Any) -> Any:
        return data

    @app.task(
        name="paid", flow="paying", subscribes=["step:order"], wait={"signal": "paid", "key": "id"}
    )
    async def paid(data: Any) -> Any:
        return data["signal"]

    @app.task(
        name="shipped",
        flow="paying",
        subscribes=["step:paid"],
        wait={"webhook": {"signed": True}, "timeout": 60},
    )
    async def shipped(data: Any) -> Any:
        return data["signal"]

    @app.task(name="ask", flow="asking", entry=True)
    async def ask(data: Any) -> Any:
        return data

    @app.task(name="answer", flow="asking", subscribes=["step:ask"], wait={"webhook": {}})
    async def answer(data: Any) -> Any:
        return data["signal"]

    @app.task(
        name="label",
        flow="handing",
        entry=True,
        wait={"after": {"webhook": {}, "timeout": 60}},
    )
    async def label(data: Any) -> Any:
        return {"parcel": data["id"]}

    @app.task(name="handed", flow="handing", subscribes=["step:label"])
    async def handed(data: Any) -> Any:
        return data


@pytest.fixture
async def served(backend: Backend) -> AsyncIterator[tuple[Workhorse, httpx.AsyncClient]]:
    app = build(backend)
    define(app)
    await app.open()
    await app.start_worker(concurrency=4)
    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield app, http
    await close_and_drop(app, backend)


async def run_of(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    r = await http.get(f"/api/runs/{run_id}", headers=READ)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def waiting(http: httpx.AsyncClient, run_id: str, step: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return next((w for w in (await run_of(http, run_id))["waits"] if w["step"] == step), None)

    return await eventually(probe, f"step {step} to wait")


async def test_flows_are_listed_as_graphs(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    _, http = served
    r = await http.get("/api/flows", headers=READ)
    assert r.status_code == 200
    flows = {f["name"]: f for f in r.json()["flows"]}
    diamond = flows["diamond"]
    assert diamond["entries"] == ["a"] and diamond["leaves"] == ["d"]
    assert sorted((e["source"], e["target"]) for e in diamond["edges"]) == [
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
    ]
    steps = {s["name"]: s for s in flows["paying"]["steps"]}
    assert steps["paid"]["wait"]["kind"] == "signal" and steps["paid"]["wait"]["key"] == "id"
    assert steps["shipped"]["wait"]["kind"] == "webhook"
    assert steps["shipped"]["wait"]["signed"] is True


async def test_a_diamond_started_over_http_completes_with_its_steps(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    _, http = served
    r = await http.post("/api/flows/diamond/runs", json={"n": 2}, headers=WRITE)
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    assert r.headers["Location"] == f"/api/runs/{run_id}"

    async def done() -> dict[str, Any] | None:
        run = await run_of(http, run_id)
        return run if run["state"] == "completed" else None

    run = await eventually(done, "the run to complete")
    steps = {s["step"]: s for s in run["steps"]}
    assert {k: s["state"] for k, s in steps.items()} == dict.fromkeys("abcd", "completed")
    assert steps["d"]["input"] == {"step:b": 3, "step:c": 20} and steps["d"]["output"] == 23
    assert steps["d"]["attempts"] == 1 and steps["d"]["finished_at"] is not None
    r = await http.post(f"/api/runs/{run_id}/resume", headers=WRITE)  # nothing failed
    assert r.status_code == 409 and r.json()["error"]["type"] == "Completed", r.text
    # A step's job is a job like any other: its page and a cursor ending at it work.
    job = await http.get(f"/api/jobs/{steps['d']['job_id']}", headers=READ)
    assert job.status_code == 200 and job.json()["result"] == 23, job.text
    seen, params = [], {"limit": 1}
    while True:
        page = await http.get("/api/jobs", params=params, headers=READ)
        assert page.status_code == 200, page.text
        seen += [j["id"] for j in page.json()["jobs"]]
        if not page.json()["next_cursor"]:
            break
        params = {"limit": 1, "cursor": page.json()["next_cursor"]}
    assert sorted(seen) == sorted({s["job_id"] for s in steps.values()})
    # The ETag of an ended run holds: a poller gets 304.
    r = await http.get(f"/api/runs/{run_id}", headers=READ)
    again = await http.get(
        f"/api/runs/{run_id}", headers={**READ, "If-None-Match": r.headers["ETag"]}
    )
    assert again.status_code == 304

    async def logged() -> list[str]:
        r = await http.get(f"/api/runs/{run_id}/events", headers=READ)
        types = [e["type"] for e in r.json()]
        return types if "flow.completed" in types else []

    types = await eventually(logged, "flow.completed in the run's events")
    assert types[0] == "flow.started" and "step.completed" in types
    # A step's job lists its job's events; its step.* events are its run's (above).
    d_events = f"/api/jobs/{steps['d']['job_id']}/events"
    listed = [e["type"] for e in (await http.get(d_events, headers=READ)).json()]
    assert listed == ["job.queued", "job.started", "job.completed"], listed
    async with http.stream("GET", d_events, headers={**READ, "Accept": "text/event-stream"}) as s:
        streamed = "".join([chunk async for chunk in s.aiter_text()])
    assert "event: job.completed" in streamed and "event: step." not in streamed
    # The stream replays the run's events and ends with its outcome.
    async with http.stream(
        "GET", f"/api/runs/{run_id}/events", headers={**READ, "Accept": "text/event-stream"}
    ) as s:
        text = "".join([chunk async for chunk in s.aiter_text()])
    assert "event: flow.started" in text and text.rstrip().split("\n")[-2] == (
        "event: flow.completed"
    )
    # A reconnecting client resumes after the Last-Event-ID it saw.
    first = int(text.split("id: ")[1].split("\n")[0])
    headers = {**READ, "Accept": "text/event-stream", "Last-Event-ID": str(first)}
    async with http.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as s:
        resumed = "".join([chunk async for chunk in s.aiter_text()])
    assert "event: flow.started" not in resumed and "event: flow.completed" in resumed
    # ?wait= answers with the ended run.
    r = await http.post("/api/flows/diamond/runs?wait=10", json={"n": 1}, headers=WRITE)
    assert r.status_code == 200 and r.json()["state"] == "completed"


async def test_runs_page_newest_first_and_filter_by_state(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    _, http = served
    ids = []
    for n in range(5):
        r = await http.post("/api/flows/paying/runs", json={"id": f"p{n}"}, headers=WRITE)
        ids.append(r.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await http.get("/api/flows/paying/runs", params=params, headers=READ)
        assert r.status_code == 200, r.text
        seen += [x["id"] for x in r.json()["runs"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    r = await http.get("/api/flows/paying/runs?state=completed", headers=READ)
    assert r.json()["runs"] == []
    r = await http.get("/api/flows/paying/runs?state=nope", headers=READ)
    assert r.status_code == 400 and "running" in r.json()["error"]["message"]


async def test_cancel_restart_and_a_signal_resuming_a_waiting_run(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    _, http = served
    r = await http.post("/api/flows/paying/runs", json={"id": "o1"}, headers=WRITE)
    run_id = r.json()["id"]
    await waiting(http, run_id, "paid")
    r = await http.post(f"/api/runs/{run_id}/cancel", headers=WRITE)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert (await run_of(http, run_id))["state"] == "cancelled"
    r = await http.post(f"/api/runs/{run_id}/cancel", headers=WRITE)
    assert r.status_code == 409
    # Resumed, the cancelled run waits for its signal again; cancelled again, restarted.
    r = await http.post(f"/api/runs/{run_id}/resume", headers=WRITE)
    assert r.status_code == 200 and r.json()["resumed"] == 0
    assert (await run_of(http, run_id))["state"] == "running"
    await waiting(http, run_id, "paid")
    r = await http.post(f"/api/runs/{run_id}/cancel", headers=WRITE)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"

    r = await http.post(f"/api/runs/{run_id}/restart", headers=WRITE)
    assert r.status_code == 202 and r.json()["id"] == run_id
    await waiting(http, run_id, "paid")
    r = await http.post("/api/signals/paid?key=o1", json={"amount": 5}, headers=WRITE)
    assert r.status_code == 200 and r.json()["resumed"] == 1
    wait = await waiting(http, run_id, "shipped")
    assert wait["webhook"] == f"/api/runs/{run_id}/webhooks/shipped"

    async def paid_out() -> Any:
        # The next step's wait starts inside the step's attempt, before its outcome.
        steps = {s["step"]: s for s in (await run_of(http, run_id))["steps"]}
        return steps["paid"]["output"]

    assert await eventually(paid_out, "the paid step's output") == {"amount": 5}


async def test_a_signed_webhook_resumes_its_step_once(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    run = await app.flows.start("paying", {"id": "o2"})
    await waiting(http, run.id, "paid")
    await app.flows.signal("paid", "ok", key="o2")
    url = (await waiting(http, run.id, "shipped"))["webhook"]
    body = json.dumps({"tracking": "T1"}).encode()
    wid = "msg_" + uuid.uuid4().hex
    # Unsigned, or signed by another secret: refused, and the step still waits.
    assert (await http.post(url, content=body, headers=WRITE)).status_code == 401
    other = "whsec_" + "b3RoZXItc2VjcmV0"
    r = await http.post(url, content=body, headers=signed(body, wid=wid, secret=other))
    assert r.status_code == 401 and "signature" in r.json()["error"]["message"]
    r = await http.post(url, content=body, headers=signed(body, wid=wid, ts=1))
    assert r.status_code == 401
    r = await http.post(url, content=body, headers=signed(body, wid=wid))
    assert r.status_code == 200, r.text
    assert r.json()["resumed"] == 1
    # The same delivery again is refused; so is a new one once the step has resumed.
    r = await http.post(url, content=body, headers=signed(body, wid=wid))
    assert r.status_code == 409 and r.json()["error"]["type"] == "WebhookReplayed"
    r = await http.post(url, content=body, headers=signed(body, wid=wid + "b"))
    assert r.status_code == 409 and r.json()["error"]["type"] == "NotWaiting"
    assert await run.result(timeout=10) == {"shipped": {"tracking": "T1"}}


async def test_an_unsigned_webhook_wait_needs_a_write_token(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    run = await app.flows.start("asking", {"q": 1})
    url = (await waiting(http, run.id, "answer"))["webhook"]
    assert (await http.post(url, json={"a": 2})).status_code == 401
    assert (await http.post(url, json={"a": 2}, headers=READ)).status_code == 403
    r = await http.post(url, content=b"{not json", headers=WRITE)
    assert r.status_code == 400
    r = await http.post(url, json={"a": 2}, headers=WRITE)
    assert r.status_code == 200 and r.json()["resumed"] == 1
    assert await run.result(timeout=10) == {"answer": {"a": 2}}


async def test_a_webhook_after_a_step_resumes_its_completion_over_http(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    run = await app.flows.start("handing", {"id": "p1"})
    wait = await waiting(http, run.id, "label")
    assert wait["phase"] == "after" and wait["webhook"] == f"/api/runs/{run.id}/webhooks/label"

    # The step ran (its wait is armed before its outcome is written); its completion,
    # and so the next step, waits for the webhook.
    async def labelled() -> Any:
        steps = {s["step"]: s for s in (await run_of(http, run.id))["steps"]}
        return steps if steps["label"]["output"] is not None else None

    steps = await eventually(labelled, "the label step's output")
    assert set(steps) == {"label"} and steps["label"]["output"] == {"parcel": "p1"}
    r = await http.post(wait["webhook"], json={"carrier": "ups"}, headers=WRITE)
    assert r.status_code == 200, r.text
    assert r.json()["resumed"] == 1
    assert await run.result(timeout=10) == {
        "handed": {"output": {"parcel": "p1"}, "signal": {"carrier": "ups"}}
    }
    r = await http.post(wait["webhook"], json={"carrier": "ups"}, headers=WRITE)
    assert r.status_code == 409 and r.json()["error"]["type"] == "NotWaiting"


async def test_an_idempotency_key_starts_one_run(
    served: tuple[Workhorse, httpx.AsyncClient],
) -> None:
    app, http = served
    headers = {**WRITE, "Idempotency-Key": "k-" + uuid.uuid4().hex}
    first = await http.post("/api/flows/paying/runs", json={"id": "x"}, headers=headers)
    again = await http.post("/api/flows/paying/runs", json={"id": "x"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await http.post("/api/flows/paying/runs", json={"id": "y"}, headers=headers)
    assert other.status_code == 422
    assert len(await app.flows.list("paying")) == 1


async def test_auth_refusals_and_404s(served: tuple[Workhorse, httpx.AsyncClient]) -> None:
    app, http = served
    assert (await http.get("/api/flows")).status_code == 401
    r = await http.post("/api/flows/diamond/runs", json={"n": 1}, headers=READ)
    assert r.status_code == 403
    assert (await http.post("/api/signals/paid", headers=READ)).status_code == 403
    r = await http.post("/api/flows/nope/runs", json={}, headers=WRITE)
    assert r.status_code == 404 and "diamond" in r.json()["error"]["message"]
    missing = "0123456789abcdef"
    for path in ("", "/events"):
        assert (await http.get(f"/api/runs/{missing}{path}", headers=READ)).status_code == 404
    for action in ("cancel", "restart", "resume"):
        r = await http.post(f"/api/runs/{missing}/{action}", headers=WRITE)
        assert r.status_code == 404
    assert (await http.get("/api/runs/not-a-run", headers=READ)).status_code == 422
    run = await app.flows.start("paying", {"id": "z"})
    r = await http.post(f"/api/runs/{run.id}/webhooks/paid", json={}, headers=WRITE)
    assert r.status_code == 404 and "waits for a webhook" in r.json()["error"]["message"]
    # A webhook for a run that does not exist is refused before the run is looked up.
    r = await http.post(f"/api/runs/{missing}/webhooks/shipped", json={})
    assert r.status_code == 401
    r = await http.post("/api/signals/webhook", json={}, headers=WRITE)
    assert r.status_code == 400
    assert app.flows.names() == ["asking", "diamond", "handing", "paying"]
