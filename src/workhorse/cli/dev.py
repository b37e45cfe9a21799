"""``workhorse dev APP``: a worker (with its scheduler) for development, restarted when a
source file changes. The worker runs in a child process, so each restart imports the code
afresh; the jobs it was running are handed back to their queue by its graceful stop and
run again in the next child, none lost."""

from __future__ import annotations

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


def _stop(child: subprocess.Popen[bytes], grace: float) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)  # stop claiming; running jobs get `grace`, then go back
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
def dev(
    app_spec: str,
    url: str | None,
    queues: str | None,
    paths: tuple[Path, ...],
    shutdown_grace: float,
) -> None:
    """Run a worker and the scheduler for APP on the default store (SQLite under
    ./.workhorse/), restarting the worker when a .py file changes. Jobs in flight at a
    restart go back to their queue at once (or after --shutdown-grace) and run again."""
    watchfiles = _watch()
    watched = [p.resolve() for p in paths] or [Path.cwd()]
    args = [sys.executable, "-m", "workhorse", "worker", app_spec]
    args += ["--shutdown-grace", str(shutdown_grace)]
    if url:
        args += ["--url", url]
    if queues:
        args += ["--queues", queues]
    env = {**os.environ, "WORKHORSE_ENVIRONMENT": "development"}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console = err()
    console.print(f"[bold]workhorse dev[/] {app_spec}: watching {', '.join(map(str, watched))}")
    child = subprocess.Popen(args, env=env)
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
            console.print(f"[yellow]{names} changed: restarting the worker[/]")
            _stop(child, shutdown_grace)
            child = subprocess.Popen(args, env=env)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(child, shutdown_grace)
