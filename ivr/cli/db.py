"""``ivr db``: the database's schema — status, migrate (and copy, to move to PostgreSQL)."""

from __future__ import annotations

import click

from rating.store import Database, open_store, parse_database
from rating.store._schema import MIGRATIONS, SchemaMode

from ._app import _settings, emit, json_option, main, run


async def _schema_version(database: Database, mode: SchemaMode, *, must_exist: bool) -> int:
    """Open the store in ``mode`` (inspect: change nothing; migrate: upgrade), and return
    the schema version it found, closing it again."""
    store = open_store(database, schema=mode, must_exist=must_exist)
    await store.open()
    try:
        return store.schema_found or 0
    finally:
        await store.close()


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
        found = await _schema_version(database, "inspect", must_exist=True)
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
        found = await _schema_version(database, "migrate", must_exist=False)
        known = len(MIGRATIONS)
        emit(as_json, {"database": database.shown(), "from": found, "to": known},
             [f"{database.shown()}: schema {found} -> {known}" if found != known
              else f"{database.shown()}: schema {known}, nothing to do"])

    run(go())


@db.command("copy")
@click.option("--from", "source", required=True, metavar="FILE",
              help="The database to copy: a SQLite file or sqlite:PATH.")
@click.option("--to", "target", required=True, metavar="URL", help="A new, empty database: postgresql://user@host/db.")
@json_option
def copy(source: str, target: str, as_json: bool) -> None:
    """Copy every card, ledger row, CDR … into a new database, then check the balances."""
    from rating.store._copy import copy_store

    async def go() -> None:
        src_db, dst_db = parse_database(source), parse_database(target)
        src = open_store(src_db, must_exist=True)
        dst = open_store(dst_db)
        await src.open()
        try:
            await dst.open()
            try:
                report = await copy_store(src, dst)
            finally:
                await dst.close()
        finally:
            await src.close()
        emit(as_json, {"from": src_db.shown(), "to": dst_db.shown(), "rows": report.rows, "cards": report.cards,
                       "balance_s": report.balance_s},
             [f"copied {src_db.shown()} -> {dst_db.shown()}",
              *(f"  {table}: {n} rows" for table, n in report.rows.items()),
              f"checked: {report.cards} cards, {report.balance_s} s in balances, equal on both sides and to"
              " their ledgers"])

    run(go())
