"""schemathesis against the OpenAPI document, a few examples per route, on a live server:
no route answers 500, and every answer matches the schema it documents."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from workhorse import JobContext, Workhorse
from workhorse.http import create_app

TOKEN = {"Authorization": "Bearer schema-write-token"}


def _app(tmp: Path) -> Workhorse:
    app = Workhorse(
        f"sqlite:///{tmp / 'schema.db'}", api_tokens="write:schema-write-token", poll_interval=0.05
    )

    @app.task
    async def noop(data: Any = None) -> dict[str, Any]:
        return {}

    @app.task(mode="both", http={"path": "/api/echo"})
    async def echo(data: dict[str, int], ctx: JobContext) -> dict[str, int]:
        ctx.log("echo")
        return data

    # A flow, so the flow routes answer with graphs and runs, not only 404s.
    @app.task(name="first", flow="pair", entry=True, triggers=["pair.go"])
    async def first(data: Any = None) -> Any:
        return data

    @app.task(name="second", flow="pair", subscribes=["step:first"], wait={"signal": "go"})
    async def second(data: Any = None) -> Any:
        return data

    return app


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    app = _app(tmp_path_factory.mktemp("schema"))
    api = create_app(app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(api, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    async def serve() -> None:
        await app.open()
        await app.start_worker()  # so a ?wait= ends with the job, not the wait
        await server.serve()
        await app.stop_workers()
        await app.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{port}", api.openapi()
    server.should_exit = True
    thread.join(10)


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# Checks of behaviour the API chooses on purpose (auth, refusals), not of its schema.
NOT_CHECKED = [
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.ignored_auth,
    checks.use_after_free,
    checks.ensure_resource_availability,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.response_headers_conformance,
    checks.max_response_time,
]


def test_no_route_answers_500_or_breaks_its_schema(live: tuple[str, dict[str, Any]]) -> None:
    base, doc = live
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18  # every REST route and the task endpoints

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def examples(case: Any) -> None:
            case.call_and_validate(
                base_url=base,
                headers={**(case.headers or {}), **TOKEN},
                checks=CHECKS,
                excluded_checks=NOT_CHECKED,
            )

        examples()
