"""The hook commands: ``listen`` runs a listener as a service; ``hooks`` shows each hook
group's lag and parked events, and replays or drops a parked event."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from workhorse.app import Workhorse
from workhorse.cli.console import echo_json, err, fields_of, out
from workhorse.cli.loading import drive, make_app, url_option
from workhorse.hooks import GroupStatus, Parked
from workhorse.urls import redact


@click.command()
@click.argument("app_spec", metavar="APP", envvar="WORKHORSE_APP")
@url_option
@click.option("--group", help="Hook group to read for [env WORKHORSE_HOOK_GROUP; default app].")
@click.option(
    "--from-start",
    is_flag=True,
    help="A group never seen before reads the whole event log (default: from its end).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def listen(
    app_spec: str, url: str | None, group: str | None, from_start: bool, log_level: str
) -> None:
    """Run APP's hooks (@app.on) over the durable event log until SIGTERM/SIGINT.

    Listeners of one group share the events; on a signal the listener finishes its batch,
    saves its cursors and gives its partitions back."""
    from rich.logging import RichHandler

    app = make_app(app_spec, url, hook_group=group)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err(), show_path=False)],
        force=True,
    )
    names = ", ".join(h.name for h in app.hooks.set) or "none"
    err().print(
        f"[bold]workhorse listen[/] app={app_spec} url={redact(app.settings.url)} "
        f"group={app.settings.hook_group} hooks: {names}"
    )
    if not len(app.hooks.set):
        raise click.ClickException(
            f"{app_spec} subscribes no hooks: add one with @app.on('job.completed', ...)"
        )

    async def run(app: Workhorse) -> None:
        listener = app.listener(from_start=from_start)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, listener.stop)
        await listener.run()
        err().print(f"stopped: {listener.handled} hook calls, {listener.parked} parked")

    drive(app, run)


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("words", nargs=-1, metavar="[replay|drop|forget] APP [PARKED_ID|GROUP]")
@url_option
@click.option("--group", help="Hook group (default: the hook_group setting, app).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def hooks(words: Sequence[str], url: str | None, group: str | None, as_json: bool) -> None:
    """Hook groups: lag (events behind, age of the oldest unread), listeners and parked
    events with their errors. `hooks replay APP ID` calls a parked event's hook again
    (here, with APP's hooks); `hooks drop APP ID` forgets it; `hooks forget APP GROUP`
    deletes a group no longer used (its cursors, parked events, hold on the log)."""
    action, rest = (
        (words[0], words[1:])
        if words and words[0] in ("replay", "drop", "forget")
        else (None, words)
    )
    if len(rest) != (1 if action is None else 2):
        raise click.UsageError(
            "usage: workhorse hooks APP | workhorse hooks replay APP ID | "
            "workhorse hooks drop APP ID | workhorse hooks forget APP GROUP "
            "(IDs and groups are listed by `workhorse hooks APP`)"
        )
    app = make_app(rest[0], url, need_registry=True)
    if action == "replay":
        drive(app, lambda a: a.hooks.replay(rest[1], group), existing=True)
        out().print(f"replayed {rest[1]}: the hook returned; it is no longer parked")
        return
    if action == "forget":
        gone = drive(app, lambda a: a.hooks.forget(rest[1]), existing=True)
        out().print(f"forgot hook group {rest[1]} ({gone} keys)")
        return
    if action == "drop":
        if not drive(app, lambda a: a.hooks.drop(rest[1], group), existing=True):
            raise click.ClickException(f"no parked event {rest[1]}")
        out().print(f"dropped {rest[1]}")
        return

    async def go(a: Workhorse) -> tuple[list[GroupStatus], list[Parked]]:
        statuses = await a.hooks.status()
        parked: list[Parked] = []
        for s in statuses:
            if group is None or s.group == group:
                parked.extend(await a.hooks.parked(s.group))
        return [s for s in statuses if group is None or s.group == group], parked

    statuses, parked = drive(app, go, existing=True)
    if as_json:
        echo_json(
            {
                "groups": [fields_of(s) for s in statuses],
                "parked": [{**fields_of(p), "event": p.event.to_dict()} for p in parked],
            }
        )
        return
    console = out()
    if not statuses:
        console.print("no hook groups yet (a listener creates its group when it starts)")
        return
    console.print(lag_table(statuses))
    if parked:
        console.print(parked_table(parked))
    else:
        console.print("no parked events")


def lag_line(s: GroupStatus) -> str:
    behind = f"{s.behind}{'+' if s.behind_capped else ''}"
    age = "-" if s.oldest_unread_age is None else f"{s.oldest_unread_age:.1f}s"
    line = f"{behind} events behind, oldest unread {age}"
    return f"{line}, LOST {lost_text(s)}" if s.lost_incidents else line


def lost_text(s: GroupStatus) -> str:
    """The events the log's retention trimmed before the group read them."""
    if not s.lost_incidents:
        return "0"
    count = "an unknown number of" if s.lost_events is None else f"up to {s.lost_events}"
    return f"{count} events ({s.lost_incidents} times)"


def lag_table(statuses: Sequence[GroupStatus]) -> Table:
    table = Table(title="hook groups")
    for col in ("group", "behind", "oldest unread", "listeners", "partitions", "parked", "lost"):
        table.add_column(col)
    for s in statuses:
        table.add_row(
            s.group,
            f"{s.behind}{'+' if s.behind_capped else ''}",
            "-" if s.oldest_unread_age is None else f"{s.oldest_unread_age:.1f}s",
            str(s.listeners),
            str(s.partitions),
            str(s.parked),
            lost_text(s),
        )
    return table


def parked_table(parked: Sequence[Parked]) -> Table:
    table = Table(title="parked events (workhorse hooks replay APP ID)")
    for col in ("id", "group", "event", "job", "attempts", "error"):
        table.add_column(col)
    for p in parked:
        msg: Any = p.error.get("message", "")
        table.add_row(
            p.id,
            p.group,
            p.event.type,
            p.event.job_id or "-",
            str(p.attempts),
            f"{p.error.get('type', '')}: {str(msg)[:80]}",
        )
    return table
