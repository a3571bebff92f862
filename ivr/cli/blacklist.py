"""``ivr blacklist add|remove|list|import|export``: blocked callers (inbound) and
destinations (outbound), per project or global, in the telco's ``x`` notation."""

from __future__ import annotations

import sys
from typing import Any

import click

from rating.models import BlockedNumber, Project
from rating.store.base import OperatorStore

from .. import operations as ops
from ..clock import SystemClock
from ..settings import Settings
from ._app import (
    CliError,
    confirm,
    emit,
    json_option,
    main,
    note,
    open_new_file,
    os_user,
    plural,
    with_store,
    yes_option,
)
from ._format import csv_text, iso, local, table


@main.group()
def blacklist() -> None:
    """Blocked numbers: digits, x for any one digit (04412345x), a trailing . for anything
    more (0900.), + or 00 for international (+4190.)."""


def entry_dict(e: BlockedNumber, names: dict[int, str]) -> dict[str, Any]:
    """The stable JSON shape of a blocked number."""
    return {"pattern": e.pattern, "scope": "global" if e.project_id is None else "project",
            "project": names.get(e.project_id) if e.project_id is not None else None,
            "direction": e.direction, "reason": e.reason, "added_by": e.added_by,
            "added_at": iso(e.created_ms)}


def _scope_name(project: Project | None) -> str:
    return f"project {project.name}" if project else "every project (global)"


def scope_options(f: Any) -> Any:
    f = click.option("--global", "is_global", is_flag=True, help="The global list (every project).")(f)
    return click.option("--project", "project_name", help="The project's own list.")(f)


def direction_option(f: Any) -> Any:
    return click.option("--direction", type=click.Choice(ops.DIRECTIONS), default="inbound", show_default=True,
                        help="inbound: callers; outbound: destinations.")(f)


async def _scope(store: OperatorStore, project_name: str | None, is_global: bool) -> Project | None:
    if bool(project_name) == is_global:
        raise click.UsageError("give either --project NAME or --global")
    return await ops.project(store, project_name) if project_name else None


async def _names(store: OperatorStore) -> dict[int, str]:
    return {p.id: p.name for p in await store.projects()}


@blacklist.command("add")
@click.argument("pattern")
@scope_options
@direction_option
@click.option("--reason", default="", help="Why, for whoever reads the list later.")
@click.option("--by", "added_by", metavar="NAME", default=os_user, show_default="your user name", help="Who blocks it.")
@json_option
@with_store
async def blacklist_add(store: OperatorStore, settings: Settings, *, pattern: str, project_name: str | None,
                        is_global: bool, direction: str, reason: str, added_by: str, as_json: bool) -> None:
    """Block a number or number block."""
    p = await _scope(store, project_name, is_global)
    e = await ops.blacklist_add(store, project=p, pattern=pattern, direction=direction, reason=reason,
                                added_by=added_by, now_ms=SystemClock().now_ms())
    who = "callers" if direction == "inbound" else "destinations"
    emit(as_json, entry_dict(e, await _names(store)), [f"blocked {who} {e.pattern} in {_scope_name(p)}"])
    if direction == "outbound":
        note("note: outbound entries are kept for the destinations; the prepaid flow dials only the"
             " project's service")


@blacklist.command("remove")
@click.argument("pattern")
@scope_options
@direction_option
@yes_option
@json_option
@with_store
async def blacklist_remove(store: OperatorStore, settings: Settings, *, pattern: str, project_name: str | None,
                           is_global: bool, direction: str, yes: bool, as_json: bool) -> None:
    """Unblock a number or number block."""
    p = await _scope(store, project_name, is_global)
    e = await ops.blocked_entry(store, project=p, pattern=pattern, direction=direction)
    confirm(f"Unblock {e.pattern} ({e.direction}) in {_scope_name(p)}"
            + (f", blocked because {e.reason!r}" if e.reason else "") + "?", yes)
    await ops.blacklist_remove(store, project=p, pattern=e.pattern, direction=e.direction)
    emit(as_json, entry_dict(e, await _names(store)), [f"unblocked {e.pattern} ({e.direction}) in {_scope_name(p)}"])


@blacklist.command("list")
@click.option("--project", "project_name", help="The project's entries and the global ones.")
@click.option("--global", "is_global", is_flag=True, help="Only the global entries.")
@click.option("--direction", type=click.Choice(ops.DIRECTIONS), help="Only inbound or outbound.")
@json_option
@with_store
async def blacklist_list(store: OperatorStore, settings: Settings, *, project_name: str | None, is_global: bool,
                         direction: str | None, as_json: bool) -> None:
    """List blocked numbers (all, a project's with the global ones, or only the global ones)."""
    if project_name and is_global:
        raise click.UsageError("--project and --global exclude each other")
    p = await ops.project(store, project_name) if project_name else None
    entries = await ops.blocked_list(store, project=p, only_global=is_global, direction=direction)
    names = await _names(store)
    data = [entry_dict(e, names) for e in entries]
    rows = [[d["pattern"], d["project"] or "(global)", d["direction"], d["reason"], d["added_by"] or "-",
             local(e.created_ms)] for d, e in zip(data, entries, strict=True)]
    emit(as_json, data, table(["PATTERN", "SCOPE", "DIRECTION", "REASON", "BY", "ADDED"], rows,
                              empty="no blocked numbers"))


@blacklist.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@scope_options
@click.option("--replace", is_flag=True, help="The file replaces the scope's whole list.")
@click.option("--by", "added_by", metavar="NAME", default=os_user, show_default="your user name",
              help="Who blocks them (rows without an added_by).")
@yes_option
@json_option
@with_store
async def blacklist_import(store: OperatorStore, settings: Settings, *, file: str, project_name: str | None,
                           is_global: bool, replace: bool, added_by: str, yes: bool, as_json: bool) -> None:
    """Add the numbers of a CSV file (columns: pattern[, direction, reason, added_by]).

    Every row is checked first: one bad row and nothing changes."""
    p = await _scope(store, project_name, is_global)
    if file == "-" and replace and not yes:
        raise click.UsageError("the list comes from stdin, so nobody can confirm: add --yes to replace")
    text = sys.stdin.read() if file == "-" else _read(file)
    rows = ops.parse_blacklist_csv(text, source="stdin" if file == "-" else file, default_by=added_by)
    if replace:
        old = await ops.blocked_list(store, project=p, only_global=p is None, include_global=False)
        confirm(f"Replace the {len(old)} entries of {_scope_name(p)} with the {len(rows)} of {file}?", yes)
    result = await ops.import_blacklist(store, project=p, rows=rows, replace=replace,
                                        now_ms=SystemClock().now_ms())
    emit(as_json, {"scope": "global" if p is None else "project", "project": p.name if p else None,
                   "added": result.added, "already_there": result.already_there, "removed": result.removed,
                   "replaced": replace},
         [f"{_scope_name(p)}: {result.added} added, {result.already_there} already there"
          + (f", {result.removed} old entries removed" if replace else "")])


def _read(path: str) -> str:
    """The CSV's text. Raises CliError (one line) for a missing or unreadable file, or one
    that is not UTF-8 (a spreadsheet's Latin-1 export: save it as 'CSV UTF-8')."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, not a CSV file") from None
    except PermissionError:
        raise CliError(f"{path}: not allowed to read it") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise CliError(f"{path}: not UTF-8 text (line {line}); save it as 'CSV UTF-8' and import again") from None


@blacklist.command("export")
@click.argument("file", required=False, default="-", type=click.Path(dir_okay=False, allow_dash=True))
@scope_options
@yes_option
@json_option
@with_store
async def blacklist_export(store: OperatorStore, settings: Settings, *, file: str, project_name: str | None,
                           is_global: bool, yes: bool, as_json: bool) -> None:
    """Write a scope's list as CSV (to FILE, or stdout), ready for ``import``."""
    p = await _scope(store, project_name, is_global)
    entries = await ops.blocked_list(store, project=p, only_global=p is None, include_global=False)
    names = await _names(store)
    data = [entry_dict(e, names) for e in entries]
    if as_json:
        return emit(True, data, [])
    text = csv_text(["pattern", "direction", "reason", "added_by", "added_at", "scope"],
                    [[d["pattern"], d["direction"], d["reason"], d["added_by"], d["added_at"],
                      d["project"] or "global"] for d in data])
    if file == "-":
        click.echo(text, nl=False)
        return
    with open_new_file(file, yes) as out:
        out.write(text)
    note(f"{plural(len(data), 'entry', 'entries')} of {_scope_name(p)} written to {file}")
