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
    more (0900.), + or 00 for international (+4190.). A national number means the
    project's country (the global list: E.164, or --region); each entry is kept in E.164."""


def entry_dict(e: BlockedNumber, projects: dict[int, Project]) -> dict[str, Any]:
    """The stable JSON shape of a blocked number: ``pattern`` as the engine reads it (E.164
    prefix form), ``stored`` as the database holds it (a national form kept from before)."""
    owner = projects.get(e.project_id) if e.project_id is not None else None
    return {"pattern": ops.shown_pattern(e, owner.region if owner else None),
            "scope": "global" if e.project_id is None else "project",
            "project": owner.name if owner else None, "direction": e.direction, "reason": e.reason,
            "added_by": e.added_by, "added_at": iso(e.created_ms), "stored": e.pattern}


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


async def _projects(store: OperatorStore) -> dict[int, Project]:
    return {p.id: p for p in await store.projects()}


def region_option(f: Any) -> Any:
    return click.option("--region", help="The country a national pattern means (CH, DE …); default the"
                                         " project's. The global list needs it for national patterns.")(f)


def whole_country_option(f: Any) -> Any:
    return click.option("--whole-country", is_flag=True,
                        help="Allow a pattern that blocks every number of a country code (+41., +4.).")(f)


@blacklist.command("add")
@click.argument("pattern")
@scope_options
@direction_option
@region_option
@whole_country_option
@click.option("--reason", default="", help="Why, for whoever reads the list later.")
@click.option("--by", "added_by", metavar="NAME", default=os_user, show_default="your user name", help="Who blocks it.")
@json_option
@with_store
async def blacklist_add(store: OperatorStore, settings: Settings, *, pattern: str, project_name: str | None,
                        is_global: bool, direction: str, region: str | None, whole_country: bool, reason: str,
                        added_by: str, as_json: bool) -> None:
    """Block a number or number block."""
    p = await _scope(store, project_name, is_global)
    e = await ops.blacklist_add(store, project=p, pattern=pattern, direction=direction, reason=reason,
                                added_by=added_by, now_ms=SystemClock().now_ms(), region=region,
                                whole_country=whole_country)
    who = "callers" if direction == "inbound" else "destinations"
    emit(as_json, entry_dict(e, await _projects(store)), [f"blocked {who} {e.pattern} in {_scope_name(p)}"])
    if direction == "outbound":
        note("note: outbound entries are kept for the destinations; the prepaid flow dials only the"
             " project's service")


@blacklist.command("remove")
@click.argument("pattern")
@scope_options
@direction_option
@region_option
@yes_option
@json_option
@with_store
async def blacklist_remove(store: OperatorStore, settings: Settings, *, pattern: str, project_name: str | None,
                           is_global: bool, direction: str, region: str | None, yes: bool, as_json: bool) -> None:
    """Unblock a number or number block, however it is written (0791112244 or +41791112244)."""
    p = await _scope(store, project_name, is_global)
    found = await ops.blocked_entries(store, project=p, pattern=pattern, direction=direction, region=region)
    reasons = [e.reason for e in found.entries if e.reason]
    forms = sorted({e.pattern for e in found.entries} - {found.pattern})
    confirm(f"Unblock {found.pattern} ({direction}) in {_scope_name(p)}"
            + (f", also stored as {', '.join(forms)}" if forms else "")
            + (f", blocked because {reasons[0]!r}" if reasons else "") + "?", yes)
    await ops.blacklist_remove(store, project=p, pattern=pattern, direction=direction, region=region)
    projects = await _projects(store)
    still = await ops.still_blocked_by(store, project=p, number=found.pattern, direction=direction)
    data = entry_dict(found.entries[0], projects)
    emit(as_json, {**data, "pattern": found.pattern, "removed": len(found.entries),
                   "still_blocked_by": entry_dict(still, projects) if still else None},
         [f"unblocked {found.pattern} ({direction}) in {_scope_name(p)}"
          + (f" ({len(found.entries)} entries: {', '.join(e.pattern for e in found.entries)})"
             if len(found.entries) > 1 else "")])
    if still is not None:
        owner = projects.get(still.project_id) if still.project_id is not None else None
        note(f"note: {found.pattern} is still blocked by {ops.shown_pattern(still, owner.region if owner else None)}"
             f" in {_scope_name(owner)}")


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
    projects = await _projects(store)
    data = [entry_dict(e, projects) for e in entries]
    rows = [[d["pattern"], d["project"] or "(global)", d["direction"], d["reason"], d["added_by"] or "-",
             local(e.created_ms)] for d, e in zip(data, entries, strict=True)]
    emit(as_json, data, table(["PATTERN", "SCOPE", "DIRECTION", "REASON", "BY", "ADDED"], rows,
                              empty="no blocked numbers"))


@blacklist.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@scope_options
@region_option
@whole_country_option
@click.option("--replace", is_flag=True, help="The file replaces the scope's whole list.")
@click.option("--by", "added_by", metavar="NAME", default=os_user, show_default="your user name",
              help="Who blocks them (rows without an added_by).")
@yes_option
@json_option
@with_store
async def blacklist_import(store: OperatorStore, settings: Settings, *, file: str, project_name: str | None,
                           is_global: bool, region: str | None, whole_country: bool, replace: bool,
                           added_by: str, yes: bool, as_json: bool) -> None:
    """Add the numbers of a CSV file (columns: pattern[, direction, reason, added_by]).

    Every row is checked first, as 'add' checks it: one bad row and nothing changes."""
    p = await _scope(store, project_name, is_global)
    if file == "-" and replace and not yes:
        raise click.UsageError("the list comes from stdin, so nobody can confirm: add --yes to replace")
    text = sys.stdin.read() if file == "-" else _read(file)
    region = (region or (p.region if p else "")).upper() or None
    rows = ops.parse_blacklist_csv(text, source="stdin" if file == "-" else file, default_by=added_by,
                                   region=region, whole_country=whole_country)
    if replace:
        old = await ops.blocked_list(store, project=p, only_global=p is None, include_global=False)
        confirm(f"Replace the {len(old)} entries of {_scope_name(p)} with the {len(rows)} of {file}?", yes)
    result = await ops.import_blacklist(store, project=p, rows=rows, replace=replace,
                                        now_ms=SystemClock().now_ms(), region=region)
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
    projects = await _projects(store)
    data = [entry_dict(e, projects) for e in entries]
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
