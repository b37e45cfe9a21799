"""The commands that look at the store: ``jobs``, ``job``, ``status`` and ``cron``."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from workhorse.app import Workhorse
from workhorse.cli.console import (
    counts_table,
    echo_json,
    err,
    fields_of,
    fmt_time,
    job_detail,
    jobs_table,
    out,
    state_text,
    workers_table,
)
from workhorse.cli.hooks import lag_line
from workhorse.cli.loading import app_option, drive, make_app, url_option
from workhorse.hooks import GroupStatus
from workhorse.job import Job, JobKey, JobState, WorkerInfo
from workhorse.urls import redact


@click.command()
@click.option("--queue", help="Only this queue.")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only this state.")
@click.option("--task", help="Only this task.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--cursor",
    help="Start after this job: the cursor the previous page printed (CREATED:ID).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@app_option
@url_option
def jobs(
    queue: str | None,
    state: str | None,
    task: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    app_spec: str | None,
    url: str | None,
) -> None:
    """List jobs, newest first; a full page ends with the --cursor of the next (on stderr)."""
    after = JobKey.from_cursor(cursor)
    if cursor and after is None:
        raise click.BadParameter("not a cursor this command printed", param_hint="--cursor")
    app = make_app(app_spec, url)
    found = drive(
        app,
        lambda a: a.jobs(queue=queue, state=state, task=task, limit=limit, after=after),
        existing=True,
    )
    if as_json:
        echo_json([fields_of(j) for j in found])
    elif not found:
        err().print("no jobs match")
    else:
        out().print(jobs_table(found))
    if len(found) == limit:  # a keyset page: jobs added meanwhile shift nothing
        err().print(f"next page: --cursor {JobKey.of(found[-1]).cursor()}")


@click.command()
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
        echo_json(fields_of(found))
    else:
        out().print(job_detail(found))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@app_option
@url_option
def status(as_json: bool, app_spec: str | None, url: str | None) -> None:
    """Job counts per queue and state, paused queues, live workers and hook groups' lag."""
    app = make_app(app_spec, url)

    async def go(
        app: Workhorse,
    ) -> tuple[dict[str, dict[str, int]], set[str], list[WorkerInfo], list[str], list[GroupStatus]]:
        counts = await app.counts()
        paused = await app.paused()
        workers = await app.workers()
        unknown = await unknown_tasks(app, workers)
        return counts, paused, workers, unknown, await app.hooks.status()

    counts, paused, workers, unknown, hook_groups = drive(app, go, existing=True)
    if as_json:
        echo_json(
            {
                "url": redact(app.settings.url),
                "counts": counts,
                "paused": sorted(paused),
                "workers": [fields_of(w) for w in workers],
                "unknown_tasks": unknown,
                "hooks": [fields_of(g) for g in hook_groups],
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
    for g in hook_groups:
        console.print(f"hook group {g.group}: {lag_line(g)}, {g.parked} parked")
    for name in unknown:
        console.print(
            f"[yellow]warning: no live worker knows task {name!r}: its jobs wait (or fail "
            "after unknown_task_window). Deploy a worker whose app registers it[/]"
        )


async def unknown_tasks(app: Workhorse, workers: list[WorkerInfo]) -> list[str]:
    """Tasks of the app (when given) and of waiting jobs that no live worker knows."""
    if not workers:
        return []  # "no live workers" says it already
    known = {t for w in workers for t in w.tasks}
    wanted = set(app.tasks)
    for state in ("queued", "scheduled"):
        wanted.update(j.task for j in await app.jobs(state=state, limit=500))
    return sorted(wanted - known)


@click.command()
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


@click.command()
@click.argument("app_spec", metavar="APP", envvar="WORKHORSE_APP")
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def tasks(app_spec: str, url: str | None, as_json: bool) -> None:
    """Every task of APP: queue, runtime, options, schedule and flow steps; with the live
    workers that know it (when the store is reachable)."""
    from workhorse.observability.catalog import catalog, step_text

    app = make_app(app_spec, url, need_registry=True)
    entries = catalog(app.registry, app.flows.graph)

    async def go(app: Workhorse) -> list[WorkerInfo]:
        return await app.workers()

    try:
        workers: list[WorkerInfo] | None = drive(app, go, existing=True)
    except click.ClickException:
        workers = None  # no store yet: the catalog comes from the code alone
    for e in entries:
        e["workers"] = None if workers is None else sum(e["name"] in w.tasks for w in workers)
    if as_json:
        echo_json(entries)
        return
    table = Table(title="Tasks", header_style="bold")
    columns = ["name", "queue", "runtime", "options", "schedule", "workers", "description"]
    steps = any(e["flows"] for e in entries)
    if steps:  # an app without flows keeps the table it had
        columns.insert(5, "flow")
    for col in columns:
        table.add_column(col)
    for e in entries:
        options = ", ".join(f"{k}={v}" for k, v in e["options"].items())
        schedule = e["schedule"]
        row = [
            e["name"],
            e["queue"],
            e["runtime"],
            options,
            "" if schedule is None else f"{schedule['cron']} ({schedule['timezone']})",
            "?" if e["workers"] is None else str(e["workers"]),
            e["description"],
        ]
        if steps:
            row.insert(5, "\n".join(step_text(s) for s in e["flows"]))
        table.add_row(*row)
    out().print(table)
