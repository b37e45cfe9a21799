"""``workhorse serve``: the HTTP API and the task endpoints, standalone under uvicorn."""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING

import click

from workhorse.cli.console import err
from workhorse.cli.loading import make_app, url_option
from workhorse.errors import WorkhorseError
from workhorse.urls import redact

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import FrameType

    from fastapi import APIRouter, FastAPI

    from workhorse.app import Workhorse


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


@click.command()
@click.argument("app_spec", metavar="APP", envvar="WORKHORSE_APP")
@url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve every route without auth (tokens are still accepted). Needed to listen "
    "on a non-loopback address without WORKHORSE_API_TOKENS.",
)
@click.option(
    "--dashboard/--no-dashboard",
    default=True,
    show_default=True,
    help="Serve the dashboard too, under the dashboard_prefix setting (/admin).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--listen",
    is_flag=True,
    help="Also run APP's hooks listener (@app.on) in this process, so that the API side "
    "listens and can replay parked events (skipped when APP subscribes no hook).",
)
def serve(
    app_spec: str,
    url: str | None,
    host: str,
    port: int,
    insecure: bool,
    dashboard: bool,
    log_level: str,
    listen: bool,
) -> None:
    """Serve APP's REST API and its http/both task endpoints with uvicorn (one process).

    Without WORKHORSE_API_TOKENS every route but /api/health refuses callers; a
    non-loopback --host then needs --insecure.
    """
    try:
        import uvicorn  # noqa: F401 (the extra's check: run_server imports it)

        from workhorse.dashboard import router as dashboard_router
        from workhorse.http import create_app
    except ImportError as exc:
        raise click.UsageError(
            f"workhorse serve needs the http extra: pip install 'workhorse[http]' ({exc})"
        ) from None
    app = make_app(app_spec, url)
    console = err()
    has_tokens = app.settings.api_tokens is not None
    if not has_tokens and not insecure and not is_loopback(host):
        raise click.UsageError(
            f"refusing to listen on {host} without auth: set WORKHORSE_API_TOKENS="
            "write:<token> (see docs/http.md), or pass --insecure to serve it open"
        )
    try:
        routers = [dashboard_router(app, insecure=insecure)] if dashboard else []
        routers += [*operations(app), *([listening(app)] if listen else [])]
        api = create_app(app, insecure=insecure, routers=routers)
    except WorkhorseError as exc:
        raise click.UsageError(str(exc)) from None
    endpoints = sorted(
        t.defaults.http.path or f"{app.settings.api_prefix}/tasks/{t.name}/call"
        for t in app.tasks.values()
        if t.defaults.http is not None
    )
    console.print(
        f"[bold]workhorse serve[/] app={app_spec} url={redact(app.settings.url)} "
        f"on http://{host}:{port}{app.settings.api_prefix} "
        f"endpoints: {', '.join(endpoints) or 'none'}"
    )
    if dashboard:
        console.print(f"dashboard: http://{host}:{port}{app.settings.dashboard_prefix}/")
    if listen:
        hooks = ", ".join(h.name for h in app.hooks.set)
        console.print(
            f"hooks listener: group={app.settings.hook_group} hooks: {hooks}"
            if hooks
            else "[yellow]--listen: the app subscribes no hooks, so no listener runs[/]"
        )
    if insecure:
        console.print(
            "[bold red]INSECURE: every route answers without auth (--insecure); anyone who "
            "can reach this address can enqueue, cancel and purge jobs[/]"
        )
    elif not has_tokens:
        console.print("[yellow]no WORKHORSE_API_TOKENS: every route but /api/health answers 401[/]")
    run_server(api, host=host, port=port, log_level=log_level)


def operations(app: Workhorse) -> list[APIRouter]:
    """/metrics and /health (Prometheus scrapes and probes), when prometheus_client is there."""
    try:
        from workhorse.observability.routes import router
    except ImportError:
        return []
    return [router(app)]


def listening(app: Workhorse) -> APIRouter:
    """A router whose lifespan runs the app's hooks listener beside the server (if the app
    subscribes any hook): started after the store opens, stopped before it closes."""
    from contextlib import asynccontextmanager

    from fastapi import APIRouter

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        if not len(app.hooks.set):
            yield
            return
        await app.start_listener()
        try:
            yield
        finally:
            await app.stop_listener()

    return APIRouter(lifespan=lifespan)


def run_server(api: FastAPI, host: str, port: int, log_level: str) -> None:
    """Run ``api`` under uvicorn until SIGTERM or SIGINT; the signal also ends the open
    event streams, which uvicorn's graceful shutdown would otherwise wait for forever."""
    import uvicorn

    from workhorse.http.closing import close_streams

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            close_streams()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(api, host=host, port=port, log_level=log_level, access_log=False)
    # uvicorn raises the signal again once shut down; a Ctrl-C is a clean stop, as in
    # uvicorn.run.
    with contextlib.suppress(KeyboardInterrupt):
        Server(config).run()
