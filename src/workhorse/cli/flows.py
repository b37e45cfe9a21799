"""The flow commands: ``flows`` lists runs; ``flow`` shows one run as a tree of its steps."""

from __future__ import annotations

import collections
from datetime import UTC, datetime

import click
from rich.table import Table
from rich.tree import Tree

from workhorse.app import Workhorse
from workhorse.cli.console import echo_json, fields_of, out, short
from workhorse.cli.loading import drive, make_app, url_option
from workhorse.flows import FlowDef, RunInfo, RunRecord
from workhorse.flows.graph import STEP_PREFIX

RUN_STYLE = {"running": "cyan", "completed": "green", "failed": "red", "cancelled": "yellow"}


def _at(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@click.argument("app_spec", metavar="APP", envvar="WORKHORSE_APP")
@url_option
@click.option("--flow", "flow_name", help="Only runs of this flow.")
@click.option(
    "--state", type=click.Choice(["running", "completed", "failed", "cancelled"]), default=None
)
@click.option("--limit", default=50, show_default=True, help="Newest runs shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def flows(
    app_spec: str,
    url: str | None,
    flow_name: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Flow runs of APP, newest first, with their state."""
    app = make_app(app_spec, url, need_registry=True)
    runs = drive(app, lambda a: a.flows.list(flow_name, state, limit=limit), existing=True)
    if as_json:
        echo_json([fields_of(r) for r in runs])
        return
    if not runs:
        out().print("no flow runs")
        return
    out().print(runs_table(runs))


def runs_table(runs: list[RunRecord]) -> Table:
    table = Table(title="flow runs")
    for col in ("run", "flow", "state", "started", "ended", "input"):
        table.add_column(col)
    for r in runs:
        table.add_row(
            r.id,
            r.flow,
            f"[{RUN_STYLE[r.state]}]{r.state}[/]" + (" [red]stalled[/]" if r.stalled_at else ""),
            _at(r.created_at),
            _at(r.ended_at),
            short(r.input),
        )
    return table


@click.command()
@click.argument("app_spec", metavar="APP", envvar="WORKHORSE_APP")
@click.argument("run_id")
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a tree.")
def flow(app_spec: str, run_id: str, url: str | None, as_json: bool) -> None:
    """One flow run as a tree of its steps with their states."""
    app = make_app(app_spec, url, need_registry=True)

    async def get(a: Workhorse) -> RunInfo:
        try:
            return await a.flows.get(run_id)
        except LookupError as exc:
            raise click.ClickException(str(exc.args[0])) from None

    info = drive(app, get, existing=True)
    if as_json:
        echo_json(fields_of(info))
        return
    out().print(run_tree(info, app.flows.graph.flows.get(info.flow)))


def run_tree(info: RunInfo, definition: FlowDef | None) -> Tree:
    """The run's steps from its entries down, each with its jobs' states (a step that ran
    for several triggers, a fan-out, shows a count per state)."""
    stalled = " [red]stalled[/]" if info.stalled_at else ""
    root = Tree(f"[bold]{info.flow}[/] {info.id} [{RUN_STYLE[info.state]}]{info.state}[/]{stalled}")
    for w in info.waits:
        what = f"signal {w['signal']!r} key {w['key']!r}" if w["signal"] else "its time"
        after = " (after it ran)" if w.get("phase") == "after" else ""
        root.add(f"[yellow]{w['step']}{after} waits for {what}[/]")
    if info.error:
        root.add(f"[red]{info.error.get('step')}: {info.error.get('message')}[/]")
    states: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for s in info.steps:
        states[s.step][s.state] += 1
    if definition is None:  # a flow this app does not define: a flat list
        for step, counts in states.items():
            root.add(_label(step, counts))
        return root
    shown: set[str] = set()

    def add(node: Tree, step: str, note: str = "") -> None:
        branch = node.add(_label(step, states.get(step)) + note)
        if step in shown:
            return
        shown.add(step)
        own = definition.steps[step]
        for trigger in (STEP_PREFIX + step, *own.emits):
            for sub in definition.subscribers(trigger):
                add(branch, sub.name)

    for entry in definition.entries():
        # An entry's external triggers: what starts this flow from outside a run.
        add(root, entry.name, f" [dim]on {', '.join(entry.triggers)}[/]" if entry.triggers else "")
    return root


def _label(step: str, counts: collections.Counter[str] | None) -> str:
    if not counts:
        return f"{step} [dim]not started[/]"
    parts = []
    for state, n in sorted(counts.items()):
        style = {"completed": "green", "failed": "red", "active": "cyan"}.get(state, "yellow")
        parts.append(f"[{style}]{state}[/]" + (f" x{n}" if n > 1 else ""))
    return f"{step} " + ", ".join(parts)
