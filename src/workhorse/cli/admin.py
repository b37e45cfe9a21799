"""The commands about the installation: ``settings``, ``migrate``, ``check`` and ``demo``."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from workhorse.app import Workhorse
from workhorse.cli.console import echo_json, err, fields_of, out
from workhorse.cli.loading import app_option, drive, make_app, require_store, url_option
from workhorse.settings import check_queues
from workhorse.urls import redact


def setting_default(value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_markdown() -> str:
    """The table in docs/configuration.md (a test keeps the two equal)."""
    from workhorse.settings import ENV_PREFIX, Settings

    lines = ["| setting | environment variable | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = setting_default(field.default)
        lines.append(
            f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `{default}` | {field.description} |"
        )
    return "\n".join(lines)


@click.command()
@click.option("--markdown", is_flag=True, help="Print the reference table of every setting.")
@app_option
@url_option
def settings(markdown: bool, app_spec: str | None, url: str | None) -> None:
    """Every setting: its environment variable, default and the value in effect here."""
    from workhorse.settings import ENV_PREFIX, Settings

    if markdown:
        click.echo(settings_markdown())
        return
    app = make_app(app_spec, url)
    current = app.settings
    table = Table(header_style="bold")
    for col in ("setting", "environment variable", "value", "default", "meaning"):
        table.add_column(col, overflow="fold")
    for name, field in Settings.model_fields.items():
        value = setting_default(getattr(current, name))
        value = redact(value) if name == "url" else value
        default = setting_default(field.default)
        style = "" if value == default else "bold yellow"
        table.add_row(
            name,
            ENV_PREFIX + name.upper(),
            Text(value, style=style),
            default,
            field.description or "",
        )
    out().print(table)


@click.command()
@click.option(
    "--url",
    help="Run on this store instead of a fresh .workhorse/demo.db (WORKHORSE_URL is ignored "
    "so the demo never touches your data).",
)
@click.option(
    "--batch",
    default=5000,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many quick jobs the throughput section enqueues.",
)
@click.option(
    "--serve",
    is_flag=True,
    help="After the tour, serve the dashboard on its store (loopback) until Ctrl-C.",
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def demo(url: str | None, batch: int, serve: bool, port: int) -> None:
    """A tour: worker process, retries, progress, failure, a batch, status.

    Runs on its own SQLite file (.workhorse/demo.db) unless --url says otherwise.
    """
    # Imported here: the tour brings its own app, which no other command loads.
    from workhorse.cli.demo import run_demo

    code = run_demo(url=url, batch=batch)
    if code == 0 and serve:
        from workhorse.cli.showing import serve_demo

        serve_demo(port)
    sys.exit(code)


@click.command()
@app_option
@url_option
def migrate(app_spec: str | None, url: str | None) -> None:
    """Bring the store's schema up to date (PostgreSQL); workers refuse an old schema."""
    app = make_app(app_spec, url)
    backend = app.backend
    run_migrations = getattr(backend, "migrate", None)
    if run_migrations is None:
        err().print(f"{backend.url.split('://')[0]}:// keeps its own layout: nothing to migrate")
        return

    async def go(app: Workhorse) -> list[int]:
        applied: list[int] = await run_migrations()
        return applied

    applied = drive(app, go)
    if applied:
        err().print(f"applied migration(s) {', '.join(map(str, applied))}")
    else:
        err().print("schema already up to date")


# Exit codes of `check` (docs/operations.md): 1 the store is unusable, 4 degraded (--strict).
EXIT_DEGRADED = 4


@click.command()
@click.argument("app_arg", metavar="[APP]", required=False)
@app_option
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--max-age",
    type=click.FloatRange(min=0),
    help="Seconds a due job may wait before the check calls the system degraded.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 4 when degraded (waiting jobs with no live worker, or older than --max-age).",
)
def check(
    app_arg: str | None,
    app_spec: str | None,
    url: str | None,
    as_json: bool,
    max_age: float | None,
    strict: bool,
) -> None:
    """Is the configured store reachable? Its clock, schema, and what it lacks; does every
    task name a known queue (as a worker checks at start); live workers per queue and the
    oldest waiting job. Exits 0 when the store is usable, 1 when it is not, 4 when degraded
    with --strict: fit for Kubernetes probes."""
    from workhorse.observability.health import check as health_check

    app = make_app(app_arg or app_spec, url)
    backend = app.backend
    report: dict[str, Any] = {"url": redact(backend.url), "backend": type(backend).__name__}

    async def go(app: Workhorse) -> None:
        # The queue names first: a typo there fails a worker's start-up just the same.
        s = app.settings
        check_queues({n: t.defaults.queue for n, t in app.tasks.items()}, s.queues, s.known_queues)
        report["queues"] = {"consumed": list(s.queues), "known": list(s.known_queues)}
        await require_store(app)
        started = time.perf_counter()
        await app.open()
        report["open_ms"] = round((time.perf_counter() - started) * 1000, 1)
        started = time.perf_counter()
        now = await backend.now()
        report["round_trip_ms"] = round((time.perf_counter() - started) * 1000, 2)
        report["clock_skew_s"] = round(now - time.time(), 3)
        version = getattr(backend, "schema_version", None)
        if version is not None:
            report["schema_version"] = await version()
        server_info = getattr(backend, "server_info", None)  # Redis: mode, version, nodes
        if server_info is not None:
            report.update(await server_info())
        report["capabilities"] = fields_of(backend.capabilities)
        report["lacks"] = [f for f, ok in report["capabilities"].items() if not ok]
        health = await health_check(app.client, max_age)
        if health.error is not None:
            raise click.ClickException(f"the store failed: {health.error}")
        report["workers"] = health.workers
        report["queued"] = health.queued
        report["oldest_age_s"] = health.oldest_age
        report["status"] = health.status
        report["problems"] = health.problems

    try:
        drive(app, go)
    except click.ClickException as exc:
        report["error"] = exc.message
        report["status"] = "down"
        if as_json:
            echo_json(report)
        raise
    if as_json:
        echo_json(report)
    else:
        table = Table(show_header=False, box=None)
        for key, value in report.items():
            table.add_row(key, str(value))
        out().print(table)
    if strict and report.get("status") == "degraded":
        sys.exit(EXIT_DEGRADED)
