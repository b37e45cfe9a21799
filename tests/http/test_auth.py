"""Every refusal: no token, a wrong one, a read token on a write, and signed webhooks that
are forged, replayed or stale. Nothing refused runs the handler."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import orjson
import pytest

from tests.http.conftest import READ, SECRET, WRITE, WRITE_OLD, Served, build
from workhorse.errors import ConfigError
from workhorse.http import create_app


@pytest.fixture(params=["sqlite"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Auth is decided before the store is touched (but for webhook dedupe): one backend."""
    return str(request.param)


def signed(
    body: bytes, *, wid: str = "msg_1", ts: int | None = None, secret: str = SECRET
) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest())
    return {
        "webhook-id": wid,
        "webhook-timestamp": str(ts),
        "webhook-signature": f"v1,{sig.decode()}",
        "content-type": "application/json",
    }


async def calls(served: Served) -> int:
    """Finished call records (their private queue is not in ``counts()``'s listing)."""
    jobs = await served.app.jobs(limit=500)
    return sum(1 for j in jobs if j.queue.startswith("http.") and j.finished)


async def test_a_write_without_a_token_or_with_a_wrong_one_is_401(served: Served) -> None:
    r = await served.http.post("/api/send-email", json={"to": "a@b.c"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await served.http.post(
        "/api/tasks/noop/jobs", json={}, headers={"Authorization": "Bearer nope-nope-nope"}
    )
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "the bearer token is not valid"
    assert "nope" not in r.text  # a token is never echoed
    r = await served.http.post(
        "/api/tasks/noop/jobs", json={}, headers={"Authorization": "Basic abc"}
    )
    assert r.status_code == 401
    assert await calls(served) == 0
    assert (await served.app.counts()).get("default", {}).get("queued", 0) == 0


async def test_a_read_token_reads_but_cannot_write(served: Served) -> None:
    assert (await served.http.get("/api/queues", headers=READ)).status_code == 200
    for method, url in [
        ("POST", "/api/send-email"),
        ("POST", "/api/tasks/noop/jobs"),
        ("POST", "/api/queues/default/pause"),
        ("DELETE", "/api/queues/default/jobs"),
        ("DELETE", "/api/schedules/x"),
    ]:
        r = await served.http.request(method, url, json={"to": "a"}, headers=READ)
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["error"]["type"] == "Forbidden"


async def test_reads_need_a_token_unless_opened_and_health_never_does(served: Served) -> None:
    assert (await served.http.get("/api/queues")).status_code == 401
    assert (await served.http.get("/api/health")).status_code == 200


async def test_both_rotated_write_tokens_work(served: Served) -> None:
    for token in (WRITE, WRITE_OLD):
        r = await served.http.post("/api/tasks/noop/jobs", json={}, headers=token)
        assert r.status_code == 202


async def test_without_configured_tokens_everything_but_health_is_refused_with_the_fix() -> None:
    app = build(api_tokens=None)
    async with (
        app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(app)), base_url="http://t"
        ) as c,
    ):
        r = await c.post("/api/tasks/noop/jobs", json={})
        assert r.status_code == 401
        assert "WORKHORSE_API_TOKENS" in r.json()["error"]["message"]
        assert (await c.get("/api/health")).status_code == 200


async def test_insecure_opens_everything_and_open_reads_open_only_reads() -> None:
    app = build(api_tokens=None)
    async with (
        app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(app, insecure=True)), base_url="http://t"
        ) as c,
    ):
        assert (await c.post("/api/tasks/noop/jobs", json={})).status_code == 202
    app = build(api_open_reads=True)
    async with (
        app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(app)), base_url="http://t"
        ) as c,
    ):
        assert (await c.get("/api/queues")).status_code == 200
        assert (await c.post("/api/tasks/noop/jobs", json={})).status_code == 401


async def test_an_auth_function_decides_when_no_token_is_sent() -> None:
    app = build()
    check = lambda request: "write" if request.headers.get("x-user") == "admin" else None  # noqa: E731
    async with (
        app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(app, auth=check)), base_url="http://t"
        ) as c,
    ):
        assert (
            await c.post("/api/tasks/noop/jobs", json={}, headers={"x-user": "admin"})
        ).status_code == 202
        assert (
            await c.post("/api/tasks/noop/jobs", json={}, headers={"x-user": "eve"})
        ).status_code == 401
        # A cookie-style caller is refused a state change from another site (CSRF).
        cross = {"x-user": "admin", "sec-fetch-site": "cross-site"}
        assert (await c.post("/api/tasks/noop/jobs", json={}, headers=cross)).status_code == 403
        elsewhere = {"x-user": "admin", "origin": "https://evil.example"}
        r = await c.post("/api/tasks/noop/jobs", json={}, headers=elsewhere)
        assert r.status_code == 403
        same = {"x-user": "admin", "origin": "http://t"}
        assert (await c.post("/api/tasks/noop/jobs", json={}, headers=same)).status_code == 202
        assert (await c.get("/api/queues", headers=cross)).status_code == 200  # reads are fine


def test_a_malformed_token_setting_names_the_format() -> None:
    with pytest.raises(ConfigError, match="SCOPE:TOKEN"):
        create_app(build(api_tokens="admin:abcdefghij"))


async def test_a_signed_webhook_runs_once_and_every_bad_signature_is_refused(
    served: Served,
) -> None:
    body = orjson.dumps({"amount": 5})
    r = await served.http.post("/hooks/payment", content=body, headers=signed(body))
    assert (r.status_code, r.json()) == (200, {"got": {"amount": 5}})
    # Replayed: the same delivery id again, validly signed.
    r = await served.http.post("/hooks/payment", content=body, headers=signed(body))
    assert r.status_code == 409
    assert r.json()["error"]["type"] == "WebhookReplayed"
    # Bad signature: signed with another secret, or the body changed after signing.
    other = "whsec_" + base64.b64encode(b"another-secret").decode()
    r = await served.http.post(
        "/hooks/payment", content=body, headers=signed(body, wid="msg_2", secret=other)
    )
    assert r.status_code == 401
    r = await served.http.post(
        "/hooks/payment", content=b'{"amount":500}', headers=signed(body, wid="msg_3")
    )
    assert r.status_code == 401
    # Expired (and from the future): outside the five-minute window.
    for ts in (int(time.time()) - 301, int(time.time()) + 301):
        r = await served.http.post(
            "/hooks/payment", content=body, headers=signed(body, wid=f"msg_{ts}", ts=ts)
        )
        assert r.status_code == 401
        assert "timestamp" in r.json()["error"]["message"]
    # No signature headers at all; a bearer token does not stand in for a signature.
    r = await served.http.post(
        "/hooks/payment", content=body, headers={**WRITE, "content-type": "application/json"}
    )
    assert r.status_code == 401
    assert await calls(served) == 1


async def test_a_webhook_signed_by_a_rotated_secret_among_several_is_taken() -> None:
    old = "whsec_" + base64.b64encode(b"the-old-secret").decode()
    app = build(webhook_secrets=f"{SECRET},{old}")
    async with (
        app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(app)), base_url="http://t"
        ) as c,
    ):
        body = b"{}"
        r = await c.post("/hooks/payment", content=body, headers=signed(body, secret=old))
        assert r.status_code == 200


async def test_a_delivery_whose_handler_failed_runs_again_when_the_sender_retries(
    served: Served,
) -> None:
    body = b"{}"
    headers = signed(body, wid="msg_retry")
    first = await served.http.post("/hooks/broken", content=body, headers=headers)
    assert first.status_code == 500
    again = await served.http.post("/hooks/broken", content=body, headers=headers)
    assert again.status_code == 500  # ran again, not refused as a replay
    assert await calls(served) == 2
