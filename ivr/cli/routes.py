"""``ivr route add|list|remove|move`` (forwarding rules, Weiterleitungen) and
``ivr zone set|list`` (surcharge factors per destination zone, the included quota)."""

from __future__ import annotations

from typing import Any

import click

from rating.models import Project
from rating.routes import Route
from rating.store.base import OperatorStore
from rating.zones import RATED_ZONES

from .. import operations as ops
from ..settings import Settings
from ._app import confirm, emit, json_option, main, with_store, yes_option
from ._format import national_display, table


def route_dict(route: Route, project: Project) -> dict[str, Any]:
    """The stable JSON shape of a forwarding rule."""
    return {"position": route.position, "destination": route.destination,
            "kind": "number" if route.is_number else "dial_string",
            "when": route.conditions_text(),
            "hours": route.hours.text() if route.hours else None,
            "closed_on": route.hours.closed_text().split(",") if route.hours and route.hours.closed_on else [],
            "ring_timeout_s": route.ring_timeout_s or project.ring_timeout_s}


def _destination_text(route: Route, project: Project) -> str:
    if not route.is_number:
        return route.destination
    via = project.trunk or "no trunk!"
    return f"{route.destination} ({national_display(route.destination)}) via {via}"


def route_table(project: Project) -> list[str]:
    """Which destination when: one row per rule, in the order the walk tries them."""
    rows = [[r.position, _destination_text(r, project), r.conditions_text(),
             r.hours.text() if r.hours else "any time",
             r.hours.closed_text() if r.hours and r.hours.closed_on else "-",
             f"{r.ring_timeout_s or project.ring_timeout_s} s"] for r in project.routes]
    lines = table(["#", "DESTINATION", "WHEN", f"HOURS ({project.timezone})", "CLOSED ON", "RING"], rows,
                  right={0, 5}, empty="no rules")
    if any(r.hours for r in project.routes):
        lines.append("  outside these hours callers hear the 'closed' prompt and nothing is debited")
    return lines


def times(per_mille: int) -> str:
    """1200 -> ``1.2``, 1000 -> ``1``."""
    return f"{per_mille // 1000}.{per_mille % 1000:03d}".rstrip("0").rstrip(".")


def zone_table(project: Project) -> list[str]:
    rows = [[z.value, f"{project.tariff.factor(z)} ‰", times(project.tariff.factor(z))] for z in RATED_ZONES]
    rows.append(["internal (dial strings)", "1000 ‰", "1"])
    quota = project.tariff.quota_s
    return [*table(["ZONE", "FACTOR", "x"], rows, right={1, 2}),
            f"  included per card and month: {quota // 60} min at factor 1000" if quota
            else "  no included quota"]


@main.group()
def route() -> None:
    """Forwarding rules: where calls go, when, and where next on busy / no answer."""


@route.command("add")
@click.argument("project_name", metavar="PROJECT")
@click.argument("destination")
@click.option("--when", default="always", show_default=True,
              help="always, or after a leg that was: busy, noanswer, unavailable (comma-separated).")
@click.option("--hours", help="Office hours in the project's time zone:"
                              " 'mon-fri 08:00-12:00,13:00-17:00; sat 09:00-12:00'.")
@click.option("--closed-on", default="", help="Dates the hours do not apply (holidays): 2026-12-25,2026-12-26.")
@click.option("--ring-timeout", type=int, help="Seconds this leg may ring (default: the project's).")
@click.option("--position", type=int, help="Insert as rule N (default: last).")
@json_option
@with_store
async def route_add(store: OperatorStore, settings: Settings, *, project_name: str, destination: str, when: str,
                    hours: str | None, closed_on: str, ring_timeout: int | None, position: int | None,
                    as_json: bool) -> None:
    """Add a rule. DESTINATION is a dial string (PJSIP/100@office) or a phone number
    (E.164 or national), dialled through the project's trunk; a number the project may not
    dial (country, premium rate …, outbound block) is refused."""
    project = await ops.project(store, project_name)
    updated, added = await ops.add_route(store, project, destination=destination, when=when, hours=hours,
                                         closed_on=closed_on, ring_timeout_s=ring_timeout, position=position)
    emit(as_json, route_dict(added, updated), [f"rule {added.position} added to {updated.name}",
                                               *route_table(updated)])


@route.command("list")
@click.argument("project_name", metavar="PROJECT")
@json_option
@with_store
async def route_list(store: OperatorStore, settings: Settings, *, project_name: str, as_json: bool) -> None:
    """The rules in the order calls try them."""
    project = await ops.project(store, project_name)
    emit(as_json, [route_dict(r, project) for r in project.routes], route_table(project))


@route.command("remove")
@click.argument("project_name", metavar="PROJECT")
@click.argument("position", type=int)
@yes_option
@json_option
@with_store
async def route_remove(store: OperatorStore, settings: Settings, *, project_name: str, position: int, yes: bool,
                       as_json: bool) -> None:
    """Remove rule POSITION (the rules after it move up)."""
    project = await ops.project(store, project_name)
    if not 1 <= position <= len(project.routes):
        raise click.BadParameter(f"no rule {position} (the project has {len(project.routes)})",
                                 param_hint="POSITION")
    old = project.routes[position - 1]
    confirm(f"Remove rule {position} ({old.destination}, {old.conditions_text()}) of {project.name}?", yes)
    updated = await ops.remove_route(store, project, position)
    emit(as_json, [route_dict(r, updated) for r in updated.routes],
         [f"rule {position} removed from {updated.name}", *route_table(updated)])


@route.command("move")
@click.argument("project_name", metavar="PROJECT")
@click.argument("position", type=int)
@click.option("--to", "to", type=int, required=True, help="The new position.")
@json_option
@with_store
async def route_move(store: OperatorStore, settings: Settings, *, project_name: str, position: int, to: int,
                     as_json: bool) -> None:
    """Move rule POSITION to --to (the others shift)."""
    project = await ops.project(store, project_name)
    updated = await ops.move_route(store, project, position, to)
    emit(as_json, [route_dict(r, updated) for r in updated.routes],
         [f"rule {position} of {updated.name} is now rule {to}", *route_table(updated)])


@main.group()
def zone() -> None:
    """Surcharge factors per destination zone (Telefonfaktor) and the included quota."""


def zones_dict(project: Project) -> dict[str, Any]:
    return {"project": project.name, "factors_pm": {z.value: project.tariff.factor(z) for z in RATED_ZONES},
            "quota_s": project.tariff.quota_s}


@zone.command("set")
@click.argument("project_name", metavar="PROJECT")
@click.argument("factors", nargs=-1, metavar="[ZONE=FACTOR]...")
@click.option("--quota", "quota_minutes", help="Minutes per card and calendar month charged at 1000 (0: none).")
@json_option
@with_store
async def zone_set(store: OperatorStore, settings: Settings, *, project_name: str, factors: tuple[str, ...],
                   quota_minutes: str | None, as_json: bool) -> None:
    """Set factors: ZONE is national, national_mobile, eu, europe or world; FACTOR in per-mille
    (1200 = +0.2) or as a multiplier (1.2). Example: ivr zone set P national=1200 eu=1300 --quota 15"""
    parsed: dict[str, str] = {}
    for item in factors:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise click.BadParameter(f"{item!r}: ZONE=FACTOR, e.g. national=1200", param_hint="FACTORS")
        parsed[name] = value
    project = await ops.project(store, project_name)
    updated = await ops.set_zones(store, project, factors=parsed, quota_minutes=quota_minutes)
    emit(as_json, zones_dict(updated), [f"zone factors of {updated.name}", *zone_table(updated)])


@zone.command("list")
@click.argument("project_name", metavar="PROJECT")
@json_option
@with_store
async def zone_list(store: OperatorStore, settings: Settings, *, project_name: str, as_json: bool) -> None:
    """Each zone's factor and the included quota."""
    project = await ops.project(store, project_name)
    emit(as_json, zones_dict(project), zone_table(project))
