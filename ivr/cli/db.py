"""``ivr db``: the database's schema — status, migrate (and copy, to move to PostgreSQL)."""

from __future__ import annotations

import click

from rating.store import open_store, parse_database
from rating.store._schema import MIGRATIONS

from ._app import _settings, emit, json_option, main, run


@main.group()
def db() -> None:
    """The database: schema version, migrations."""


@db.command("status")
@json_option
@click.pass_context
def status(ctx: click.Context, /, as_json: bool) -> None:
    """Show the database, its schema version and the one this ivr needs."""
    settings = _settings(ctx)

    async def go() -> None:
        database = parse_database(settings.database)
        store = open_store(database, schema="inspect", must_exist=True)
        await store.open()
        try:
            found = store.schema_found or 0
        finally:
            await store.close()
        known = len(MIGRATIONS)
        state = "current" if found == known else "older: run ivr db migrate" if found < known else "newer than this ivr"
        emit(as_json, {"database": database.shown(), "backend": database.kind, "version": found, "needed": known},
             [f"database: {database.shown()} ({database.kind})", f"schema:   version {found}, this ivr needs {known}"
              f" ({state})"])

    run(go())


@db.command("migrate")
@json_option
@click.pass_context
def migrate(ctx: click.Context, /, as_json: bool) -> None:
    """Bring the schema to the version this ivr needs (back the database up first)."""
    settings = _settings(ctx)

    async def go() -> None:
        database = parse_database(settings.database)
        store = open_store(database, schema="migrate")
        await store.open()
        try:
            found = store.schema_found or 0
        finally:
            await store.close()
        known = len(MIGRATIONS)
        emit(as_json, {"database": database.shown(), "from": found, "to": known},
             [f"{database.shown()}: schema {found} -> {known}" if found != known
              else f"{database.shown()}: schema {known}, nothing to do"])

    run(go())
