"""Loading the user's app for a command (``--app``, ``--url``, their options) and driving one
async command against it: the app's import errors, missing stores and bad settings become
messages, not tracebacks."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click
import orjson

from workhorse.app import Workhorse
from workhorse.cli.console import err
from workhorse.errors import WorkhorseError
from workhorse.urls import redact

T = TypeVar("T")


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
    if loop != "asyncio":
        try:
            run = importlib.import_module("uvloop").run  # not on Windows: no uvloop there
        except ImportError:
            if loop == "uvloop":
                raise click.ClickException(
                    "event_loop=uvloop, but uvloop is not installed: pip install uvloop, or "
                    "set WORKHORSE_EVENT_LOOP=auto (or asyncio) to run on asyncio"
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
