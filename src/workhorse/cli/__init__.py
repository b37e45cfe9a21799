"""The command line: a thin layer over the client API (``workhorse --help``).

Results go to stdout (JSON, ids, tables); progress, logs and errors go to stderr, so
``workhorse run ... > out.json`` stays clean. Settings come from the options given here,
then ``WORKHORSE_*`` variables, then defaults; nothing is read before a command runs.
"""

from __future__ import annotations

import click

from workhorse.cli import admin, control, dev, flows, hooks, listing, running, serving
from workhorse.cli.loading import import_app, make_app

__all__ = ["import_app", "main", "make_app"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="workhorse")
def main() -> None:
    """workhorse: background jobs for Python.

    APP is MODULE:ATTR naming your Workhorse instance (e.g. myproject.jobs:app), imported
    with the current directory on sys.path. Settings come from options, then WORKHORSE_*
    environment variables, then defaults.
    """


for _command in (
    running.worker,
    dev.dev,
    running.run,
    running.enqueue,
    hooks.listen,
    hooks.hooks,
    flows.flows,
    flows.flow,
    listing.jobs,
    listing.job,
    listing.status,
    listing.cron,
    listing.tasks,
    control.pause,
    control.resume,
    control.cancel,
    control.retry,
    control.purge,
    admin.settings,
    admin.migrate,
    admin.check,
    admin.demo,
    serving.serve,
):
    main.add_command(_command)
