"""``workhorse demo --serve``: after the tour, the dashboard on the demo's store, on
loopback, behind a fresh token printed once, until Ctrl-C."""

from __future__ import annotations

import secrets

import click

from workhorse.cli.console import err
from workhorse.cli.serving import run_server


def serve_demo(port: int) -> None:
    try:
        import uvicorn  # noqa: F401 (the extra's check: run_server imports it)

        from workhorse.dashboard import router
        from workhorse.http import create_app
    except ImportError as exc:
        raise click.UsageError(
            f"demo --serve needs the http extra: pip install 'workhorse[http]' ({exc})"
        ) from None
    from workhorse.demo_tasks import app

    token = secrets.token_urlsafe(18)
    app.configure(api_tokens=f"write:{token}")
    prefix = app.settings.dashboard_prefix
    console = err()
    console.print(
        f"[bold]dashboard:[/] http://127.0.0.1:{port}{prefix}/  log in with the token "
        f"[bold]{token}[/] (made for this run; Ctrl-C to stop)",
        soft_wrap=True,
    )
    api = create_app(app, routers=[router(app)])
    run_server(api, host="127.0.0.1", port=port, log_level="warning")
