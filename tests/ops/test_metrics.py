"""Prometheus figures after a known sequence of jobs: a real worker process's own (scraped
over HTTP from its --metrics-port), and the store-wide ones of the /metrics router."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from workhorse import Workhorse
from workhorse.observability import stats
from workhorse.observability.routes import router

from .ops_app import make
from .procs import free_port, workhorse
from .test_stats import finish, lease


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


async def _sequence(url: str) -> Workhorse:
    """3 completed, 2 failed, 1 retried then completed, all finished."""
    producer = make(url=url)
    await producer.open()
    handles = [await producer.enqueue("ok", {"n": n}) for n in range(3)]
    handles += [await producer.enqueue("boom") for _ in range(2)]
    handles.append(await producer.enqueue("flaky"))
    for h in handles:
        await producer.wait(h.id, 20)
    return producer


@pytest.mark.slow
async def test_worker_process_metrics_scraped_over_http(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    port = free_port()
    with workhorse(
        "worker", "ops_app:app", "--url", url, "--metrics-port", str(port), log=tmp_path / "w.log"
    ):
        prod = await _sequence(url)
        try:
            async with httpx.AsyncClient() as http:
                scrape = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
        finally:
            await prod.close()
    got = samples(scrape)
    assert value(got, "workhorse_jobs_started_total", queue="default", task="ok") == 3
    assert value(got, "workhorse_jobs_started_total", queue="default", task="boom") == 2
    assert value(got, "workhorse_jobs_started_total", queue="default", task="flaky") == 2
    finished = "workhorse_jobs_finished_total"
    assert value(got, finished, queue="default", task="ok", outcome="completed") == 3
    assert value(got, finished, queue="default", task="boom", outcome="failed") == 2
    assert value(got, finished, queue="default", task="flaky", outcome="retried") == 1
    assert value(got, finished, queue="default", task="flaky", outcome="completed") == 1
    assert value(got, "workhorse_job_run_seconds_count", queue="default", task="ok") == 3
    # Run times from the claim, on the wall clock (a monotonic start read 1.7e9 s each).
    assert value(got, "workhorse_job_run_seconds_sum", queue="default", task="ok") < 20
    ran = value(got, "workhorse_job_run_seconds_bucket", queue="default", task="ok", le="10.0")
    assert ran == 3
    assert value(got, "workhorse_job_wait_seconds_count", queue="default", task="flaky") == 2
    assert value(got, "workhorse_leases_held", queue="default") == 0
    assert value(got, "workhorse_jobs_stalled_total", queue="", task="") == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
async def test_store_metrics_count_what_every_worker_finished(kind: str, tmp_path: Path) -> None:
    from tests.acceptance.harness import drop_store
    from tests.conftest import backend_url

    url = backend_url(kind, tmp_path)
    try:
        response, minutes = await _scrape_store(url, tmp_path)
    finally:
        await drop_store(url)  # after the worker stopped: nothing writes there any more
    assert response.status_code == 200
    got = samples(response.text)
    jobs = "workhorse_store_jobs_total"
    assert value(got, jobs, queue="default", task="ok", outcome="completed") == 3
    assert value(got, jobs, queue="default", task="boom", outcome="failed") == 2
    assert value(got, jobs, queue="default", task="flaky", outcome="completed") == 1
    assert value(got, jobs, queue="default", task="flaky", outcome="failed") == 0
    assert value(got, "workhorse_queue_depth", queue="default", state="scheduled") == 1
    assert value(got, "workhorse_queue_depth", queue="default", state="completed") == 4
    assert value(got, "workhorse_workers_alive", queue="default") == 1
    assert len(minutes) == 5
    assert sum(n for _, n in minutes) == 3  # the per-minute buckets hold the same jobs


async def _scrape_store(url: str, tmp_path: Path) -> tuple[httpx.Response, list[tuple[int, int]]]:
    with workhorse("worker", "ops_app:app", "--url", url, log=tmp_path / "w.log"):
        prod = await _sequence(url)
        try:
            # The workers add their counts to the store once a second (a loaded machine: 20).
            deadline = time.monotonic() + 20
            while True:
                totals = {(t.task, t.completed, t.failed) for t in await stats.totals(prod.client)}
                if (
                    totals == {("ok", 3, 0), ("boom", 0, 2), ("flaky", 1, 0)}
                    or time.monotonic() > deadline
                ):
                    break
                await asyncio.sleep(0.2)
            await prod.enqueue("ok", {"n": 9}, delay=3600)  # one job waits: depth
            api = FastAPI()
            api.include_router(router(prod))
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                response = await http.get("/metrics")
            minutes = await stats.per_minute(prod.client, "completed", "default", "ok", minutes=5)
        finally:
            await prod.close()
    return response, minutes


def test_one_port_serves_the_sum_of_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import orjson

    from workhorse.observability.process import Exporter
    from workhorse.observability.tally import Tally

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    mine, other, gone = Tally(), Tally(), Tally()
    for tally, n in ((mine, 2), (other, 3), (gone, 4)):
        finish(tally, n, "completed")
        tally.claimed([lease("held")], 1.0)  # one running job each
    # Another live process (this one's parent) and a dead one (pid 2**22 + 1 is unused).
    (tmp_path / f"workhorse-{os.getppid()}.json").write_bytes(orjson.dumps(other.to_json()))
    (tmp_path / f"workhorse-{2**22 + 1}.json").write_bytes(orjson.dumps(gone.to_json()))
    got = samples(Exporter(mine).text().decode())
    finished = "workhorse_jobs_finished_total"
    assert value(got, finished, queue="default", task="ok", outcome="completed") == 9
    assert value(got, "workhorse_job_run_seconds_count", queue="default", task="ok") == 9
    assert value(got, "workhorse_leases_held", queue="default") == 2  # the dead one's is gone


async def test_the_dashboard_and_keda_example_use_exported_metric_names() -> None:
    import re

    from workhorse.observability.collector import store_metrics
    from workhorse.observability.process import Exporter
    from workhorse.observability.tally import Tally

    tally = Tally()
    finish(tally, 1, "completed")
    tally.cron_fired("nightly", "ok")
    app = Workhorse(url="memory://")
    try:
        text = Exporter(tally).text().decode() + (await store_metrics(app.client)).decode()
    finally:
        await app.close()
    exported = names(text)
    root = Path(__file__).parents[2] / "examples"
    used = set()
    for path in [root / "grafana" / "workhorse-dashboard.json", *root.glob("deploy/**/*.yaml")]:
        used |= set(re.findall(r"workhorse_[a-z_]+", path.read_text()))
    assert used, "the examples name no metric"
    assert used - exported == set()


def names(text: str) -> set[str]:
    """Every series name the text can hold, samples or not (an empty store has none)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    out = set()
    for family in text_string_to_metric_families(text):
        out |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return out


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
async def test_store_metrics_show_each_hook_groups_lag(kind: str, tmp_path: Path) -> None:
    from tests.acceptance.harness import drop_store
    from tests.conftest import backend_url
    from tests.contract.test_hooks import listening
    from workhorse.job import Event

    url = backend_url(kind, tmp_path)
    app = Workhorse(url=url, hook_group="billing")
    seen: list[str | None] = []
    app.on("test.lag", lambda e: seen.append(e.job_id), name="lag")
    try:
        await app.open()
        async with listening(app):
            await app.backend.publish([Event("test.lag", "read")])
            while not seen:
                await asyncio.sleep(0.02)
        await app.backend.publish([Event("test.lag", f"unread{i}") for i in range(4)])
        await asyncio.sleep(0.3)
        api = FastAPI()
        api.include_router(router(app))
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/metrics")
    finally:
        await app.close()
        await drop_store(url)
    assert response.status_code == 200, response.text
    got = samples(response.text)
    assert value(got, "workhorse_hook_events_behind", group="billing") == 4
    assert value(got, "workhorse_hook_oldest_unread_seconds", group="billing") >= 0.2
    assert value(got, "workhorse_hook_parked", group="billing") == 0
    assert ("workhorse_hook_listeners", (("group", "billing"),)) in got  # none left: 0
