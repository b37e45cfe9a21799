"""What the command line and the demo print: the consoles, tables and formatters (jobs,
counts, workers, one job in full, a failure), JSON output, and ``follow``, which draws a
job's progress while it runs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from workhorse.app import Workhorse
from workhorse.job import FINISHED_STATES, Job, JobState, WorkerInfo

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


def echo_json(value: Any) -> None:
    try:
        click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:
        # orjson stops at 64-bit integers; PostgreSQL's event positions go past them.
        click.echo(json.dumps(value, indent=2, default=str))


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(job: Job) -> str:
    if job.started_at is None:
        return ""
    end = job.finished_at or datetime.now(UTC)
    return f"{(end - job.started_at).total_seconds():.2f}s"


def error_line(error: dict[str, Any]) -> str:
    return f"{error.get('type')}: {error.get('message')}"


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
            outcome = Text(short(error_line(job.error), 60), style="red")
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
    for col in ("id", "host", "pid", "queues", "tasks", "active", "processed", "up", "last seen"):
        table.add_column(col, justify="right" if col in ("active", "processed") else "left")
    now = time.time()
    for w in sorted(workers, key=lambda w: w.started_at):
        queues = ", ".join(f"{q}:{n}" for q, n in w.queues.items())
        if w.paused:
            queues += " (paused)"
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            queues,
            ", ".join(w.tasks) if len(w.tasks) <= 6 else f"{len(w.tasks)} tasks",
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
        table.add_row("error", Text(error_line(job.error), style="red"))
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


def fields_of(record: Any) -> dict[str, Any]:
    """A record (a job, a worker, capabilities) as a dict of its fields, for JSON output."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


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
