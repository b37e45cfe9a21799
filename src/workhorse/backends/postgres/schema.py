"""The schema's SQL files, its version, and migrations applied under an advisory lock.

Rule: a schema that does not exist yet is created from ``schema.sql`` on first open (an
empty schema is not "old"); an existing schema at an older version is refused by open()
unless auto-migrate was asked for (``?migrate=auto``); ``workhorse migrate`` applies the
numbered files in ``migrations/`` one by one, each in its own transaction.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from workhorse.errors import ConfigError

log = logging.getLogger("workhorse.postgres")

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str


@cache
def migrations() -> tuple[Migration, ...]:
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    for i, mig in enumerate(found, 1):
        if mig.version != i:
            raise RuntimeError(f"migrations must be numbered 0001, 0002 ...; found {mig.version}")
    return tuple(found)


@cache
def fresh_schema() -> str:
    return resources.files(__package__).joinpath("schema.sql").read_text("utf-8")


def latest() -> int:
    return migrations()[-1].version


def _lock_key(schema: str) -> sql.Composable:
    # One lock per schema, so two apps in two schemas do not wait for each other.
    return sql.SQL("pg_advisory_xact_lock(hashtext({}))").format(
        sql.Literal(f"workhorse.migrate:{schema}")
    )


async def version(conn: psycopg.AsyncConnection[Any], schema: str) -> int:
    """0 when the schema (or its ledger) does not exist yet."""
    cur = await conn.execute(
        "SELECT to_regclass(format('%%I.schema_migrations', %s::text)) IS NOT NULL", (schema,)
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_migrations").format(
            sql.Identifier(schema)
        )
    )
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def _enter(conn: psycopg.AsyncConnection[Any], schema: str) -> int:
    """Inside a transaction: take the lock, make sure the schema exists, read the version."""
    await conn.execute(sql.SQL("SELECT {}").format(_lock_key(schema)))
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
    return await version(conn, schema)


async def create_fresh(conn: psycopg.AsyncConnection[Any], schema: str) -> bool:
    """Create a missing schema from schema.sql at the latest version. False if another
    process created it first (then the caller checks the version as usual)."""
    async with conn.transaction():
        if await _enter(conn, schema) != 0:
            return False
        await conn.execute(fresh_schema().encode())
        for mig in migrations():
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (mig.version, mig.name),
            )
        # Fresh statistics, so the planner picks the partial indexes from the first claim.
        await _analyze(conn, schema)
    return True


async def _analyze(conn: psycopg.AsyncConnection[Any], schema: str) -> None:
    cur = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    tables = [sql.Identifier(schema, str(row[0])) for row in await cur.fetchall()]
    if tables:
        await conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(tables)))


async def migrate(
    conn: psycopg.AsyncConnection[Any], schema: str, target: int | None = None
) -> list[int]:
    """Apply the pending numbered migrations up to ``target`` (default: all), each in its own
    transaction under the schema's advisory lock. Returns the versions applied."""
    goal = latest() if target is None else target
    if not 0 <= goal <= latest():
        raise ValueError(f"target must be between 0 and {latest()}, got {goal}")
    applied: list[int] = []
    for mig in migrations():
        if mig.version > goal:
            break
        async with conn.transaction():
            if await _enter(conn, schema) >= mig.version:
                continue  # applied already, maybe by a concurrent migrate
            await conn.execute(mig.text.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (mig.version, mig.name),
            )
            await _analyze(conn, schema)
        applied.append(mig.version)
    return applied


async def check(
    conn: psycopg.AsyncConnection[Any], schema: str, url: str, auto_migrate: bool
) -> None:
    """On open: create a missing schema, migrate an older one when ``auto_migrate`` (else
    say how), refuse a newer one. ``url`` (redacted) only names the server in errors."""
    current = await version(conn, schema)
    if current == 0 and await create_fresh(conn, schema):
        log.info("created schema %s at version %d", schema, latest())
        return
    current = await version(conn, schema)
    newest = latest()
    if current < newest:
        if not auto_migrate:
            raise ConfigError(
                f"the PostgreSQL schema {schema!r} at {url} is at version "
                f"{current}, this workhorse needs version {newest}: run "
                "`workhorse migrate` (or add migrate=auto to the URL to migrate on "
                "start)"
            )
        applied = await migrate(conn, schema)
        log.warning("migrated schema %s: applied %s", schema, applied)
    elif current > newest:
        raise ConfigError(
            f"the PostgreSQL schema {schema!r} at {url} is at version "
            f"{current}, newer than this workhorse knows ({newest}): upgrade workhorse"
        )
