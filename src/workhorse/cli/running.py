"""The commands that run work: ``worker``, ``run`` (enqueue and wait) and ``enqueue``."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from workhorse.app import Workhorse
from workhorse.cli.console import echo_json, err, follow, print_failure
from workhorse.cli.loading import app_option, drive, make_app, parse_data, url_option
from workhorse.errors import WorkhorseError
from workhorse.job import Job, JobState
from workhorse.urls import redact

# Exit codes: 0 ok, 1 the job failed / an error, 2 bad usage (click), 3 run timed out.
EXIT_TIMEOUT = 3


@click.command()
@click.argument("app_spec", metavar="APP", envvar="WORKHORSE_APP")
@url_option
@click.option(
    "--queues",
    "-q",
    help="Queues to consume with optional concurrency, "
    "e.g. default,priority:5 [env WORKHORSE_QUEUES].",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    help="Jobs run at once per queue [env WORKHORSE_CONCURRENCY].",
)
@click.option("--burst", is_flag=True, help="Stop once the queues are empty.")
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    help="Seconds running jobs get after SIGTERM [env WORKHORSE_SHUTDOWN_GRACE].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve this worker's Prometheus figures on this port [env WORKHORSE_METRICS_PORT].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def worker(
    app_spec: str,
    url: str | None,
    queues: str | None,
    concurrency: int | None,
    burst: bool,
    shutdown_grace: float | None,
    metrics_port: int | None,
    log_level: str,
) -> None:
    """Run a worker for APP until SIGTERM/SIGINT (a second signal interrupts running jobs)."""
    from rich.logging import RichHandler

    from workhorse.worker.worker import parse_queues

    app = make_app(
        app_spec,
        url,
        concurrency=concurrency,
        shutdown_grace=shutdown_grace,
        metrics_port=metrics_port,
    )
    try:
        consume = parse_queues(queues or app.settings.queues, app.settings.concurrency)
    except (ValueError, WorkhorseError) as exc:
        raise click.BadParameter(
            f"{exc}; use name or name:concurrency, comma-separated", param_hint="--queues"
        ) from None
    logging.basicConfig(
        level=log_level.upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err(), show_path=False)],
        force=True,
    )
    tasks = ", ".join(sorted(app.tasks)) or "none"
    shown = redact(app.settings.url)
    err().print(f"[bold]workhorse worker[/] app={app_spec} url={shown} tasks: {tasks}")

    async def run(app: Workhorse) -> int:
        w = app.worker(queues=consume, burst=burst)
        w.install_signal_handlers()
        await w.run()
        return w.unwritten

    if drive(app, run, app.settings.event_loop):
        sys.exit(1)  # outcomes were given up: a supervisor must see that this exit lost work


@click.command()
@click.argument("task")
@click.option("--data", "-d", metavar="JSON", help="The payload as JSON, or @file.json.")
@app_option
@url_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    help="Seconds to wait; the attempt's limit is at most this, as in app.run().",
)
def run(
    task: str, data: str | None, app_spec: str | None, url: str | None, timeout: float | None
) -> None:
    """Enqueue TASK, show its progress while a worker runs it, print the result as JSON.

    Exits 1 if the job fails (printing the remote error and traceback) and 3 if it does not
    finish within --timeout.
    """
    payload = parse_data(data)
    app = make_app(app_spec, url, need_registry=True)
    t = _task(app, task)
    console = err()

    enqueued: list[str] = []

    def note(message: str) -> None:
        console.print(f"[yellow]{message}[/]", soft_wrap=True)

    async def go(app: Workhorse) -> Job | None:
        options = {} if timeout is None else {"timeout": app.client.attempt_limit(t, timeout)}
        handle = await app.enqueue(t, payload, **options)
        enqueued.append(handle.id)
        console.print(f"[dim]enqueued {t.name} as job {handle.id} on queue {handle.queue}[/]")
        spec = app_spec or "MODULE:APP"
        look = app.warn_without_worker(handle.queue, handle.id, note, spec)
        try:
            return await follow(app, handle.id, t.name, console, timeout)
        finally:
            look.cancel()

    try:
        job = drive(app, go)
    except KeyboardInterrupt:
        if enqueued:  # only the waiting stops: the job is in the store
            console.print(
                f"[yellow]stopped waiting; job {enqueued[0]} may still run. "
                f"Follow it with: workhorse job {enqueued[0]}[/]"
            )
        sys.exit(130)
    if job is None:
        console.print(
            f"[yellow]the job did not finish within {timeout:g}s; it may still run."
            f" Follow it with: workhorse job {enqueued[0]}[/]"
        )
        sys.exit(EXIT_TIMEOUT)
    if job.state is not JobState.COMPLETED:
        print_failure(console, job)
        sys.exit(1)
    echo_json(job.result)


def _task(app: Workhorse, name: str) -> Any:
    try:
        return app.get_task(name)
    except WorkhorseError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@click.argument("task")
@click.option("--data", "-d", metavar="JSON", help="The payload as JSON, or @file.json.")
@click.option("--delay", type=click.FloatRange(min=0), help="Seconds before it is due.")
@click.option("--priority", type=int, help="Higher runs first within its queue.")
@click.option("--queue", help="Queue to put it on (default: the task's).")
@app_option
@url_option
def enqueue(
    task: str,
    data: str | None,
    delay: float | None,
    priority: int | None,
    queue: str | None,
    app_spec: str | None,
    url: str | None,
) -> None:
    """Enqueue TASK and print the job id."""
    payload = parse_data(data)
    app = make_app(app_spec, url, need_registry=True)
    t = _task(app, task)
    given = {"delay": delay, "priority": priority, "queue": queue}
    options = {k: v for k, v in given.items() if v is not None}

    async def go(app: Workhorse) -> tuple[str, str]:
        handle = await app.enqueue(t, payload, **options)
        return handle.id, handle.status

    job_id, status = drive(app, go)
    if status != "created":  # a singleton: say which live job the id belongs to
        err().print(f"[yellow]{status}: a live job of {t.name} holds this key[/]")
    click.echo(job_id)
