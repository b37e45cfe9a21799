"""``workhorse dev APP``: a worker (with its scheduler), the app's hooks listener and, with
the http extra, the HTTP API on loopback, for development, all restarted when a source file
changes. Each runs in a child process, so each restart imports the code afresh; the jobs
the worker was running are handed back to their queue by its graceful stop and run again
in the next child, none lost."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import click

from workhorse.cli.console import err
from workhorse.cli.loading import url_option

log = logging.getLogger("workhorse.dev")

STOP_WAIT = 15.0  # seconds a stopping child gets beyond its grace before it is killed


def _watch() -> Any:
    try:
        import watchfiles
    except ImportError:
        raise click.ClickException(
            "workhorse dev reloads with watchfiles: pip install 'workhorse[dev-mode]'"
        ) from None
    return watchfiles


def _has_http() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("fastapi", "uvicorn"))


def commands(
    app_spec: str, url: str | None, queues: str | None, grace: float, port: int | None
) -> list[list[str]]:
    """The children: the worker, and the API with the listener in it (``serve --listen``)
    or, without the http extra or with ``--no-api``, the listener alone."""
    base = [sys.executable, "-m", "workhorse"]
    store = ["--url", url] if url else []
    worker = [*base, "worker", app_spec, "--shutdown-grace", str(grace), *store]
    if queues:
        worker += ["--queues", queues]
    if port is not None and _has_http():
        side = [*base, "serve", app_spec, "--host", "127.0.0.1", "--port", str(port)]
        return [worker, [*side, "--listen", *store]]
    return [worker, [*base, "listen", app_spec, *store]]


def _wait(child: subprocess.Popen[bytes], grace: float) -> None:
    """Wait for a signalled child: the worker's running jobs get ``grace``, then go back."""
    try:
        child.wait(grace + STOP_WAIT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@click.command()
@click.argument("app_spec", metavar="APP", envvar="WORKHORSE_APP")
@url_option
@click.option("--queues", "-q", help="Queues to consume, as for `workhorse worker`.")
@click.option(
    "--watch",
    "paths",
    multiple=True,
    type=click.Path(exists=True, file_okay=True, dir_okay=True, path_type=Path),
    help="Folder or file to watch for changes (repeatable) [default: the current folder].",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds running jobs get at a reload before they go back to their queue.",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the HTTP API on 127.0.0.1 (with the http extra).",
)
@click.option("--no-api", is_flag=True, help="Run no HTTP API (the hooks listener still runs).")
def dev(
    app_spec: str,
    url: str | None,
    queues: str | None,
    paths: tuple[Path, ...],
    shutdown_grace: float,
    port: int,
    no_api: bool,
) -> None:
    """Run a worker and the scheduler for APP on the default store (SQLite under
    ./.workhorse/), its hooks listener, and with the http extra its HTTP API on
    127.0.0.1:--port, restarting them all when a .py file changes. Jobs in flight at a
    restart go back to their queue at once (or after --shutdown-grace) and run again."""
    watchfiles = _watch()
    watched = [p.resolve() for p in paths] or [Path.cwd()]
    argvs = commands(app_spec, url, queues, shutdown_grace, None if no_api else port)
    env = {**os.environ, "WORKHORSE_ENVIRONMENT": "development"}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console = err()
    console.print(f"[bold]workhorse dev[/] {app_spec}: watching {', '.join(map(str, watched))}")
    serving = "serve" in argvs[1]  # else the listener alone: no API asked for, or no extra
    if not no_api and not serving:
        console.print("[yellow]no HTTP API: pip install 'workhorse[http]' to serve it too[/]")
    others = "the listener and the API" if serving else "the listener"
    children = [subprocess.Popen(a, env=env) for a in argvs]
    try:
        changes = watchfiles.watch(
            *watched,
            watch_filter=watchfiles.PythonFilter(),
            stop_event=stop,
            debounce=300,
            rust_timeout=500,
            yield_on_timeout=True,
            raise_interrupt=False,
        )
        for changed in changes:
            if not changed:
                continue  # a timeout, so that the stop event is seen; a dead child waits for a fix
            names = ", ".join(sorted({Path(p).name for _, p in changed}))
            console.print(f"[yellow]{names} changed: restarting the worker, {others}[/]")
            _stop_all(children, shutdown_grace)
            children = [subprocess.Popen(a, env=env) for a in argvs]
    except KeyboardInterrupt:
        pass
    finally:
        _stop_all(children, shutdown_grace)


def _stop_all(children: list[subprocess.Popen[bytes]], grace: float) -> None:
    """Signal every child once (a second SIGTERM could cut a graceful stop short), so they
    stop side by side, then wait for each."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        _wait(child, grace)
