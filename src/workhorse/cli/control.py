"""The commands that change jobs and queues: ``pause``, ``resume``, ``cancel``, ``retry`` and
``purge``."""

from __future__ import annotations

import click

from workhorse.app import Workhorse
from workhorse.cli.console import err
from workhorse.cli.loading import app_option, drive, make_app, parse_data, url_option
from workhorse.client import KEEP
from workhorse.job import FINISHED_STATES, Job, JobState
from workhorse.settings import BUILT_IN_QUEUES


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


def _one_target(queue: str | None, worker: str | None) -> None:
    if (queue is None) == (worker is None):
        raise click.UsageError("name a QUEUE or a worker (--worker ID), not both or neither")


def _control_worker(worker: str, resume: bool, app_spec: str | None, url: str | None) -> None:
    app = make_app(app_spec, url)

    async def go(app: Workhorse) -> None:
        await (app.resume_worker(worker) if resume else app.pause_worker(worker))

    drive(app, go, existing=True)
    err().print(f"worker {worker} asked to {'resume' if resume else 'pause'}")


@click.command()
@click.argument("queue", required=False)
@click.option("--worker", help="Pause this live worker (its id, see status) instead.")
@click.option("--force", is_flag=True, help="Pause a queue nothing knows yet.")
@app_option
@url_option
def pause(
    queue: str | None, worker: str | None, force: bool, app_spec: str | None, url: str | None
) -> None:
    """Stop workers claiming from QUEUE (running jobs finish; enqueue still works), or
    stop one worker claiming (--worker ID)."""
    _one_target(queue, worker)
    if worker is not None:
        _control_worker(worker, False, app_spec, url)
        return
    assert queue is not None
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


@click.command()
@click.argument("queue", required=False)
@click.option("--worker", help="Resume this worker (started with --paused, or paused).")
@app_option
@url_option
def resume(queue: str | None, worker: str | None, app_spec: str | None, url: str | None) -> None:
    """Let workers claim from QUEUE again, or let one worker claim (--worker ID)."""
    _one_target(queue, worker)
    if worker is not None:
        _control_worker(worker, True, app_spec, url)
        return
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


@click.command()
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


@click.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--data",
    "-d",
    metavar="JSON",
    help="Run it with this payload instead (JSON, or @file.json); its event keeps the old one.",
)
@click.option("--by", default="cli", show_default=True, help="Who changed the payload.")
@app_option
@url_option
def retry(job_id: str, data: str | None, by: str, app_spec: str | None, url: str | None) -> None:
    """Put a failed or cancelled job back in its queue with fresh attempts."""
    payload = KEEP if data is None else parse_data(data)
    app = make_app(app_spec, url, need_registry=data is not None)

    async def go(app: Workhorse) -> tuple[bool, Job | None]:
        return await app.retry(job_id, payload, by=by), await app.get_job(job_id)

    ok, found = drive(app, go, existing=True)
    if found is None:
        raise click.ClickException(f"no job {job_id}")
    if not ok:
        raise click.ClickException(
            f"job {job_id} is {found.state.value}: only failed or cancelled jobs can be retried"
            " (and not while a newer live job holds its dedup key)"
        )
    click.echo(f"job {job_id} queued again")


@click.command()
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
