"""The command line: a thin layer over the client API (``workhorse --help``).

Results go to stdout (JSON, ids, tables); progress, logs and errors go to stderr, so
``workhorse run ... > out.json`` stays clean. Settings come from the options given here,
then ``WORKHORSE_*`` variables, then defaults; nothing is read before a command runs.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from workhorse.app import Workhorse
from workhorse.errors import WorkhorseError
from workhorse.job import FINISHED_STATES, Job, JobState, WorkerInfo
from workhorse.settings import BUILT_IN_QUEUES, check_queues
from workhorse.urls import redact

T = TypeVar("T")

# Exit codes: 0 ok, 1 the job failed / an error, 2 bad usage (click), 3 run timed out.
EXIT_TIMEOUT = 3

STATE_STYLE = {
    JobState.QUEUED: "cyan",
    JobState.SCHEDULED: "blue",
    JobState.ACTIVE: "yellow",
    JobState.COMPLETED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "magenta",
}


def out() -> Console:
    # Piped output (grep, less, logs) gets wide lines rather than cramped tables.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def err() -> Console:
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


# -- loading the app ----------------------------------------------------------------------
def import_app(spec: str) -> Workhorse:
    """``module:attr`` (attr defaults to ``app``), imported with the current directory on
    ``sys.path`` so that a project's own modules are found."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise click.UsageError(f"invalid app {spec!r}: use module:attr, e.g. myproject.jobs:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not _names_part_of(exc.name, module_name):
            raise _failed_import(module_name, exc) from None
        raise click.UsageError(
            f"cannot import {module_name!r} (from app {spec!r}): {exc}. Run from the folder "
            "that holds it, or add that folder to PYTHONPATH."
        ) from None
    except Exception as exc:  # the user's module raised while it ran: show where
        raise _failed_import(module_name, exc) from None
    app = getattr(module, attr, None)
    if not isinstance(app, Workhorse):
        apps = [n for n, v in vars(module).items() if isinstance(v, Workhorse)]
        found = f"; Workhorse apps in it: {', '.join(apps)}" if apps else ""
        what = "has no attribute" if app is None else "has a non-Workhorse"
        raise click.UsageError(f"module {module_name!r} {what} {attr!r}{found}")
    return app


def _names_part_of(missing: str | None, module_name: str) -> bool:
    """Is the module that was not found the app's module itself, or a package on its
    path (``myproject`` for ``myproject.jobs``)?"""
    return missing is not None and (module_name + ".").startswith(missing + ".")


def _failed_import(module_name: str, exc: BaseException) -> click.ClickException:
    """The module was found but failed while it ran: print the user's traceback, without
    the import machinery's frames, and name the module."""
    lines = traceback.format_exception(exc)
    err().print(
        "".join(line for line in lines if "<frozen importlib." not in line),
        markup=False,
        highlight=False,
        end="",
    )
    return click.ClickException(
        f"importing {module_name!r} failed inside the module (traceback above): "
        f"{type(exc).__name__}: {exc}"
    )


def make_app(
    spec: str | None, url: str | None, *, need_registry: bool = False, **settings: Any
) -> Workhorse:
    if spec is None:
        if need_registry:
            raise click.UsageError(
                "this command needs your tasks: pass --app module:attr or set WORKHORSE_APP"
            )
        app = Workhorse()
    else:
        app = import_app(spec)
    try:
        app.configure(url=url, **settings)
        app.settings  # noqa: B018 - resolve now so a bad variable fails before any work
    except WorkhorseError as exc:
        raise click.ClickException(str(exc)) from None
    return app


def drive(
    app: Workhorse,
    fn: Callable[[Workhorse], Awaitable[T]],
    loop: str = "asyncio",
    *,
    existing: bool = False,
) -> T:
    """Run one async command against the app, close it, and turn errors into messages.
    ``existing``: the command only reads or changes jobs, so it must not create a store."""

    async def main() -> T:
        try:
            if existing:
                await require_store(app)
            return await fn(app)
        finally:
            await app.close()

    run: Callable[[Coroutine[Any, Any, T]], T] = asyncio.run
    if loop == "uvloop":
        try:
            run = importlib.import_module("uvloop").run  # an optional extra: workhorse[uvloop]
        except ImportError:
            raise click.ClickException(
                "event_loop=uvloop, but uvloop is not installed: pip install uvloop, or "
                "unset WORKHORSE_EVENT_LOOP to run on asyncio"
            ) from None
    try:
        return run(main())
    except WorkhorseError as exc:
        raise click.ClickException(str(exc)) from None


async def require_store(app: Workhorse) -> None:
    """Refuse to look at a store that does not exist, instead of creating an empty one
    (an SQLite file, a PostgreSQL schema) and reporting that it holds nothing."""
    backend = app.backend
    path = getattr(backend, "path", None)
    missing = False
    if isinstance(path, str) and path != ":memory:":
        missing = not await asyncio.to_thread(os.path.exists, path)
    version = getattr(backend, "schema_version", None)
    if not missing and version is not None:
        missing = await version() == 0
    if missing:
        raise click.ClickException(
            f"no store at {redact(backend.url)}: nothing was ever enqueued there, and this "
            "command does not create one. Run it from your project's folder, or name the "
            "store with --url or WORKHORSE_URL (a worker, an enqueue or `workhorse migrate` "
            "creates it)"
        )


def parse_data(raw: str | None) -> Any:
    if raw is None:
        return None
    if raw.startswith("@"):
        try:
            with open(raw[1:], "rb") as f:
                raw_bytes = f.read()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {raw[1:]!r}: {exc}", param_hint="--data"
            ) from None
    else:
        raw_bytes = raw.encode()
    try:
        return orjson.loads(raw_bytes)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(
            f'not valid JSON ({exc}). Quote it for the shell, e.g. --data \'{{"to": "a@b.c"}}\'',
            param_hint="--data",
        ) from None


def echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def url_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--url",
        help="Backend URL (default: WORKHORSE_URL, else sqlite:///.workhorse/workhorse.db).",
    )(f)


def app_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--app",
        "app_spec",
        envvar="WORKHORSE_APP",
        metavar="MODULE:ATTR",
        help="Your Workhorse app [env WORKHORSE_APP].",
    )(f)


# -- rendering ----------------------------------------------------------------------------
def fmt_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(job: Job) -> str:
    if job.started_at is None:
        return ""
    end = job.finished_at or datetime.now(UTC)
    return f"{(end - job.started_at).total_seconds():.2f}s"


def state_text(state: JobState | str) -> Text:
    st = JobState(state)
    return Text(st.value, style=STATE_STYLE[st])


def plain(value: Any) -> Any:
    """Job data, results and log lines are user text: never read them as rich markup."""
    return Text(value) if isinstance(value, str) else value


def fmt_progress(value: Any, width: int = 40) -> str:
    """A number as a person reads it (``6.7``, not ``6.666666666666667``); anything else
    as its JSON, cut to ``width``."""
    if isinstance(value, float):
        return f"{value:.1f}".removesuffix(".0")
    return "" if value is None else short(value, width)


def short(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


JOB_COLUMNS = (
    "id",
    "task",
    "queue",
    "state",
    "attempts",
    "progress",
    "created (UTC)",
    "took",
    "result / error",
)


def jobs_table(
    jobs: Sequence[Job], title: str | None = None, columns: Sequence[str] = JOB_COLUMNS
) -> Table:
    table = Table(title=title, header_style="bold")
    for col in columns:
        table.add_column(col, no_wrap=col != "result / error")
    for job in jobs:
        if job.error and job.state is not JobState.COMPLETED:
            error = f"{job.error.get('type')}: {job.error.get('message')}"
            outcome = Text(short(error, 60), style="red")
        elif job.state is JobState.COMPLETED:
            outcome = Text(short(job.result, 60))
        else:
            outcome = Text("")
        cells: dict[str, Any] = {
            "id": job.id,
            "task": job.task,
            "queue": job.queue,
            "state": state_text(job.state),
            "attempts": f"{job.attempts}/{job.max_attempts}",
            "progress": fmt_progress(job.progress, 12),
            "created (UTC)": fmt_time(job.created_at),
            "took": fmt_duration(job),
            "result / error": outcome,
        }
        table.add_row(*(plain(cells[c]) for c in columns))
    return table


def counts_table(counts: dict[str, dict[str, int]], paused: set[str]) -> Table:
    table = Table(title="Jobs per queue", header_style="bold")
    table.add_column("queue")
    for st in JobState:
        table.add_column(st.value, justify="right", style=STATE_STYLE[st])
    table.add_column("total", justify="right")
    totals = dict.fromkeys(JobState, 0)
    for queue in sorted(counts):
        row = counts[queue]
        for st in JobState:
            totals[st] += row.get(st, 0)
        name = f"{queue} (paused)" if queue in paused else queue
        table.add_row(name, *(str(row.get(st, 0)) for st in JobState), str(sum(row.values())))
    if len(counts) > 1:
        table.add_section()
        table.add_row("all", *(str(totals[st]) for st in JobState), str(sum(totals.values())))
    return table


def workers_table(workers: Sequence[WorkerInfo]) -> Table:
    table = Table(title="Live workers", header_style="bold")
    for col in ("id", "host", "pid", "queues", "active", "processed", "up", "last seen"):
        table.add_column(col, justify="right" if col in ("active", "processed") else "left")
    now = time.time()
    for w in sorted(workers, key=lambda w: w.started_at):
        queues = ", ".join(f"{q}:{n}" for q, n in w.queues.items())
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            queues,
            str(w.active),
            str(w.processed),
            f"{now - w.started_at:.0f}s",
            f"{max(0.0, now - w.last_seen):.1f}s ago",
        )
    return table


def job_detail(job: Job) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("id", job.id),
        ("task", job.task),
        ("queue", job.queue),
        ("state", state_text(job.state)),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("stalls", f"{job.stalls}/{job.max_stalls}"),
        ("priority", str(job.priority)),
        ("data", short(job.data, 2000)),
        ("progress", fmt_progress(job.progress, 200)),
        ("created", fmt_time(job.created_at)),
        ("run at", fmt_time(job.run_at)),
        ("started", fmt_time(job.started_at)),
        ("finished", fmt_time(job.finished_at)),
        ("took", fmt_duration(job)),
        ("timeout", "" if job.timeout is None else f"{job.timeout:g}s"),
        ("worker", job.worker or ""),
        ("lease until", fmt_time(job.lease_expires_at)),
        ("dedup key", job.dedup_key or ""),
    ]
    if job.state is JobState.COMPLETED:
        rows.append(("result", short(job.result, 2000)))
    for name, value in rows:
        if value != "":
            table.add_row(name, plain(value))
    if job.error:
        table.add_row(
            "error", Text(f"{job.error.get('type')}: {job.error.get('message')}", style="red")
        )
        if job.error.get("traceback"):
            table.add_row("traceback", Text(str(job.error["traceback"]).rstrip(), style="dim"))
    for i, line in enumerate(job.logs):
        at = datetime.fromtimestamp(float(line.get("at", 0)), UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = line.get("fields")
        msg = f"{at} {line.get('level', 'info'):<7} {line.get('message', '')}"
        if fields:
            msg += " " + orjson.dumps(fields).decode()
        table.add_row("logs" if i == 0 else "", Text(msg))
    return table


def job_as_json(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in Job.__dataclass_fields__}


def print_failure(console: Console, job: Job) -> None:
    error = job.error or {}
    stalls = f" and {job.stalls} stall(s)" if job.stalls else ""
    console.print(
        f"[red bold]job {job.id} ({job.task}) {job.state.value}[/] after {job.attempts} "
        f"attempt(s){stalls}"
    )
    console.print(Text(f"{error.get('type', 'Error')}: {error.get('message', '')}", style="red"))
    if error.get("traceback"):
        console.print(Text(str(error["traceback"]).rstrip(), style="dim"))


async def follow(
    app: Workhorse,
    job_id: str,
    label: str,
    console: Console,
    timeout: float | None,
    interval: float = 0.1,
    transient: bool = True,
) -> Job | None:
    """Poll the job, feeding a progress bar from its ``progress``; None on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=transient) as bar:
        tid = bar.add_task(label, total=100, state="queued")
        while True:
            job = await app.get_job(job_id)
            if job is None:
                raise click.ClickException(f"job {job_id} disappeared (purged?)")
            state = job.state.value
            if isinstance(job.progress, int | float) and not isinstance(job.progress, bool):
                bar.update(tid, completed=min(100.0, float(job.progress)), state=state)
            else:
                extra = "" if job.progress is None else f" {fmt_progress(job.progress, 30)}"
                bar.update(tid, state=state + extra)
            if job.state in FINISHED_STATES:
                if job.state is JobState.COMPLETED:
                    bar.update(tid, completed=100)
                return job
            if deadline is not None and time.monotonic() >= deadline:
                return None
            await asyncio.sleep(interval)


# -- commands -----------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="workhorse")
def main() -> None:
    """workhorse: background jobs for Python.

    APP is MODULE:ATTR naming your Workhorse instance (e.g. myproject.jobs:app), imported
    with the current directory on sys.path. Settings come from options, then WORKHORSE_*
    environment variables, then defaults.
    """


@main.command()
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
    log_level: str,
) -> None:
    """Run a worker for APP until SIGTERM/SIGINT (a second signal interrupts running jobs)."""
    from rich.logging import RichHandler

    from workhorse.worker.worker import parse_queues

    app = make_app(app_spec, url, concurrency=concurrency, shutdown_grace=shutdown_grace)
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


@main.command()
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


@main.command()
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


@main.command()
@click.option("--queue", help="Only this queue.")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only this state.")
@click.option("--task", help="Only this task.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@app_option
@url_option
def jobs(
    queue: str | None,
    state: str | None,
    task: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    app_spec: str | None,
    url: str | None,
) -> None:
    """List jobs, newest first."""
    app = make_app(app_spec, url)
    found = drive(
        app,
        lambda a: a.jobs(queue=queue, state=state, task=task, limit=limit, offset=offset),
        existing=True,
    )
    if as_json:
        echo_json([job_as_json(j) for j in found])
    elif not found:
        err().print("no jobs match")
    else:
        out().print(jobs_table(found))


@main.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@app_option
@url_option
def job(job_id: str, as_json: bool, app_spec: str | None, url: str | None) -> None:
    """Show one job in full: state, attempts, progress, result, error, logs, times."""
    app = make_app(app_spec, url)
    found = drive(app, lambda a: a.get_job(job_id), existing=True)
    if found is None:
        raise click.ClickException(f"no job {job_id}")
    if as_json:
        echo_json(job_as_json(found))
    else:
        out().print(job_detail(found))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@app_option
@url_option
def status(as_json: bool, app_spec: str | None, url: str | None) -> None:
    """Job counts per queue and state, paused queues, and live workers."""
    app = make_app(app_spec, url)

    async def go(app: Workhorse) -> tuple[dict[str, dict[str, int]], set[str], list[WorkerInfo]]:
        counts = await app.counts()
        paused = await app.paused()
        return counts, paused, await app.workers()

    counts, paused, workers = drive(app, go, existing=True)
    if as_json:
        echo_json(
            {
                "url": redact(app.settings.url),
                "counts": counts,
                "paused": sorted(paused),
                "workers": [vars_of(w) for w in workers],
            }
        )
        return
    console = out()
    console.print(f"[dim]{redact(app.settings.url)}[/]")
    if counts:
        console.print(counts_table(counts, paused))
    else:
        console.print("no jobs yet")
    if paused:
        console.print(f"[yellow]paused queues: {', '.join(sorted(paused))}[/]")
    if workers:
        console.print(workers_table(workers))
    else:
        console.print("no live workers")


def vars_of(w: WorkerInfo) -> dict[str, Any]:
    return {name: getattr(w, name) for name in WorkerInfo.__dataclass_fields__}


async def known_queues(app: Workhorse) -> set[str]:
    """Every queue this store or app knows: built in, set in known_queues, named by a
    task, holding jobs, consumed by a live worker, or paused."""
    workers = await app.workers()
    return {
        *BUILT_IN_QUEUES,
        *app.settings.known_queues,
        *(t.defaults.queue for t in app.tasks.values()),
        *(await app.counts()),
        *(q for w in workers for q in w.queues),
        *(await app.paused()),
    }


@main.command()
@click.argument("queue")
@click.option("--force", is_flag=True, help="Pause a queue nothing knows yet.")
@app_option
@url_option
def pause(queue: str, force: bool, app_spec: str | None, url: str | None) -> None:
    """Stop workers claiming from QUEUE (running jobs finish; enqueue still works)."""
    app = make_app(app_spec, url)

    async def go(app: Workhorse) -> str:
        known = await known_queues(app)
        if queue not in known and not force:
            raise click.ClickException(
                f"no queue {queue!r} here: no job, task, worker or setting names it. Known "
                f"queues: {', '.join(sorted(known))}. A typo? To pause it before its first "
                "job, pass --force"
            )
        if await app.is_paused(queue):
            return "already"
        await app.pause(queue)
        return "paused"

    if drive(app, go) == "already":
        raise click.ClickException(f"queue {queue} was already paused; nothing changed")
    err().print(f"queue {queue} paused")


@main.command()
@click.argument("queue")
@app_option
@url_option
def resume(queue: str, app_spec: str | None, url: str | None) -> None:
    """Let workers claim from QUEUE again."""
    app = make_app(app_spec, url)

    async def go(app: Workhorse) -> set[str]:
        paused = await app.paused()
        if queue in paused:
            await app.resume(queue)
        return paused

    paused = drive(app, go, existing=True)
    if queue not in paused:
        listed = ", ".join(sorted(paused)) or "none"
        raise click.ClickException(
            f"queue {queue} is not paused; nothing changed (paused queues: {listed})"
        )
    err().print(f"queue {queue} resumed")


@main.command()
@click.argument("job_id", metavar="ID")
@app_option
@url_option
def cancel(job_id: str, app_spec: str | None, url: str | None) -> None:
    """Cancel a queued job now, or ask an active one to stop."""
    app = make_app(app_spec, url)

    async def go(app: Workhorse) -> tuple[Job | None, JobState | None]:
        before = await app.get_job(job_id)
        if before is None or before.state in FINISHED_STATES:
            return before, None
        return before, await app.cancel(job_id)

    before, state = drive(app, go, existing=True)
    if before is None:
        raise click.ClickException(f"no job {job_id}")
    if state is None or state in FINISHED_STATES - {JobState.CANCELLED}:
        # Finished before the cancel reached it: nothing was done.
        done = state or before.state
        raise click.ClickException(f"job {job_id} is already {done.value}; nothing to cancel")
    if state is JobState.ACTIVE:
        click.echo(f"job {job_id} is running; asked its worker to stop it")
    else:
        click.echo(f"job {job_id} cancelled")


@main.command()
@click.argument("job_id", metavar="ID")
@app_option
@url_option
def retry(job_id: str, app_spec: str | None, url: str | None) -> None:
    """Put a failed or cancelled job back in its queue with fresh attempts."""
    app = make_app(app_spec, url)

    async def go(app: Workhorse) -> tuple[bool, Job | None]:
        return await app.retry(job_id), await app.get_job(job_id)

    ok, found = drive(app, go, existing=True)
    if found is None:
        raise click.ClickException(f"no job {job_id}")
    if not ok:
        raise click.ClickException(
            f"job {job_id} is {found.state.value}: only failed or cancelled jobs can be retried"
            " (and not while a newer live job holds its dedup key)"
        )
    click.echo(f"job {job_id} queued again")


@main.command()
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Delete finished jobs that finished more than this long ago.",
)
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    metavar="N",
    help="Keep only the newest N finished jobs per queue and state (--keep 0 deletes all).",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in sorted(FINISHED_STATES)]),
    help="Only these states (repeatable; default: all finished).",
)
@click.option("--queue", help="Only this queue.")
@app_option
@url_option
def purge(
    older_than: float | None,
    keep: int | None,
    states: tuple[str, ...],
    queue: str | None,
    app_spec: str | None,
    url: str | None,
) -> None:
    """Delete finished jobs (completed, failed, cancelled). Live jobs are never touched."""
    if older_than is None and keep is None:
        raise click.UsageError(
            "say what to delete: --older-than SECONDS and/or --keep N "
            "(--keep 0 deletes every finished job)"
        )
    app = make_app(app_spec, url)
    chosen = states or tuple(s.value for s in FINISHED_STATES)
    n = drive(
        app,
        lambda a: a.purge(states=chosen, older_than=older_than, keep_last=keep, queue=queue),
        existing=True,
    )
    click.echo(f"deleted {n} job(s)")


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


@main.command()
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


@main.command()
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
def demo(url: str | None, batch: int) -> None:
    """A tour: worker process, retries, progress, failure, a batch, status.

    Runs on its own SQLite file (.workhorse/demo.db) unless --url says otherwise.
    """
    from workhorse.demo import run_demo

    sys.exit(run_demo(url=url, batch=batch))


__all__ = ["import_app", "main", "make_app"]


@main.command()
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


@main.command()
@app_option
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def check(app_spec: str | None, url: str | None, as_json: bool) -> None:
    """Is the configured store reachable? Its clock, schema, and what it lacks; and does
    every task name a known queue (as a worker checks at start)?"""
    app = make_app(app_spec, url)
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
        caps = backend.capabilities
        report["capabilities"] = {f: getattr(caps, f) for f in caps.__dataclass_fields__}
        report["lacks"] = [f for f, ok in report["capabilities"].items() if not ok]

    try:
        drive(app, go)
    except click.ClickException as exc:
        report["error"] = exc.message
        if as_json:
            echo_json(report)
        raise
    if as_json:
        echo_json(report)
        return
    table = Table(show_header=False, box=None)
    for key, value in report.items():
        table.add_row(key, str(value))
    out().print(table)


@main.command()
@app_option
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def cron(app_spec: str | None, url: str | None, as_json: bool) -> None:
    """Schedules in the store, with their next runs and last results."""
    app = make_app(app_spec, url)

    async def go(app: Workhorse) -> list[tuple[Any, Job | None]]:
        rows = []
        for info in await app.schedules():
            last = await app.get_job(info.last_job_id) if info.last_job_id else None
            rows.append((info, last))
        return rows

    rows = drive(app, go, existing=True)
    if as_json:
        echo_json(
            [
                {
                    "name": i.name,
                    "task": i.task,
                    "pattern": i.pattern,
                    "timezone": i.timezone,
                    "data": i.data,
                    "source": i.source,
                    "next_run": i.next_run.isoformat(),
                    "last_run": i.last_run.isoformat() if i.last_run else None,
                    "last_job_id": i.last_job_id,
                    "last_state": last.state.value if last else None,
                }
                for i, last in rows
            ]
        )
        return
    if not rows:
        err().print("no schedules in the store (workers sync the declared ones when they start)")
        return
    table = Table("name", "task", "pattern", "zone", "next run", "last run", "last result")
    for info, last in rows:
        table.add_row(
            info.name,
            info.task,
            info.pattern,
            info.timezone,
            fmt_time(info.next_run),
            fmt_time(info.last_run),
            state_text(last.state) if last else Text("-"),
        )
    out().print(table)
