"""Forwarding rules, the destination policy, the trunk, the time zone and zone factors
(issue 11). Every change is checked first: a number the policy forbids is refused when
the rule is added (and the engine checks it again before each Dial)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import phonenumbers

from agi import check_dial_string
from rating.errors import InvalidInput
from rating.models import Project
from rating.numbers import PatternSet
from rating.routes import NumberKind, OfficeHours, Route, check_number, parse_conditions
from rating.store._rows import factors_text, kinds_text, parse_factors
from rating.store.base import OperatorStore
from rating.zones import RATED_ZONES, Zone, parse_factor

from .projects import check_routing_values, normalise

__all__ = ["add_route", "check_routing_values", "move_route", "outbound_blocks", "parse_countries", "parse_kinds",
           "remove_route", "set_zones", "zone_rows"]

_BLOCKABLE = [k for k in NumberKind if k is not NumberKind.DIAL_STRING]


def parse_countries(text: str) -> str:
    """``"de, at,ch"`` -> ``"DE,AT,CH"``. Raises InvalidInput for an unknown ISO code."""
    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    for code in codes:
        if code not in phonenumbers.SUPPORTED_REGIONS and code != "001":
            raise InvalidInput(f"country {code!r}: an ISO code such as DE, AT, CH, FR, PL (001: non-geographic)")
    return ",".join(dict.fromkeys(codes))


def parse_kinds(text: str) -> str:
    """``"premium_rate,satellite"`` (or ``none``) -> the column text. Raises InvalidInput."""
    if text.strip().lower() in ("", "none"):
        return ""
    try:
        kinds = [NumberKind(k.strip().lower().replace("-", "_")) for k in text.split(",") if k.strip()]
    except ValueError:
        raise InvalidInput(f"number types {text!r}: any of {', '.join(k.value for k in _BLOCKABLE)}"
                           " (or none)") from None
    if NumberKind.DIAL_STRING in kinds:
        raise InvalidInput("dial_string is not a number type")
    return kinds_text(list(dict.fromkeys(kinds)))


async def outbound_blocks(store: OperatorStore, project: Project) -> PatternSet:
    entries = await store.blocked(project_id=project.id, direction="outbound")
    return PatternSet((e.pattern for e in entries), project.region)


async def add_route(store: OperatorStore, project: Project, *, destination: str, when: str = "always",
                    hours: str | None = None, closed_on: str = "", ring_timeout_s: int | None = None,
                    position: int | None = None) -> tuple[Project, Route]:
    """Add a rule. A number (E.164 or national) is normalised and checked against the
    project's policy now, and needs a trunk.

    Raises:
        InvalidInput, DestinationRefused.
    """
    conditions = parse_conditions(when)
    office = OfficeHours.parse(hours, closed_on) if hours else None
    if closed_on and not hours:
        raise InvalidInput("--closed-on needs --hours (the dates close those office hours)")
    if ring_timeout_s is not None and ring_timeout_s < 1:
        raise InvalidInput(f"ring timeout must be at least 1 second, not {ring_timeout_s}")
    if position is not None and position < 1:
        raise InvalidInput(f"position must be 1 or more, not {position}")
    target = destination.strip()
    if "/" in target:
        try:
            check_dial_string(target)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    else:
        target = normalise(target, project.region)
        if not project.trunk:
            raise InvalidInput(f"project {project.name} has no trunk to dial numbers through:"
                               " set one first (ivr project update … --trunk 'PJSIP/{e164}@carrier')")
        check_number(target, home=project.region, policy=project.policy, blocks=await outbound_blocks(store, project))
    route = Route(position=position or len(project.routes) + 1, destination=target, conditions=conditions,
                  hours=office, ring_timeout_s=ring_timeout_s)
    updated = await store.add_route(project.id, route, position=position)
    added = updated.routes[(position or len(updated.routes)) - 1]
    return updated, added


async def remove_route(store: OperatorStore, project: Project, position: int) -> Project:
    if len(project.routes) <= 1:
        raise InvalidInput(f"project {project.name} needs at least one rule: add another before removing this one")
    return await store.remove_route(project.id, position)


async def move_route(store: OperatorStore, project: Project, position: int, to: int) -> Project:
    return await store.move_route(project.id, position, to)


async def set_zones(store: OperatorStore, project: Project, *, factors: Mapping[str, str],
                    quota_minutes: str | None = None) -> Project:
    """Set zone factors (``{"national": "1200", "eu": "1.3"}``) and the monthly quota in
    minutes (``"15"``; ``"0"`` for none). Raises InvalidInput."""
    known = {z.value for z in RATED_ZONES}
    current = parse_factors(_factors_column(project))
    for zone, text in factors.items():
        key = zone.strip().lower().replace("-", "_")
        if key not in known:
            raise InvalidInput(f"zone {zone!r}: one of {', '.join(sorted(known))}")
        current[key] = parse_factor(text)
    changes: dict[str, Any] = {"zone_factors": factors_text({k: v for k, v in current.items() if v != 1000})}
    if quota_minutes is not None:
        try:
            minutes = int(quota_minutes)
        except ValueError:
            raise InvalidInput(f"quota {quota_minutes!r}: whole minutes per card and month") from None
        if not 0 <= minutes <= 100_000:
            raise InvalidInput(f"quota {quota_minutes!r}: 0 to 100000 minutes")
        changes["quota_s"] = minutes * 60
    if not factors and quota_minutes is None:
        raise InvalidInput("nothing to change: give a factor (national=1200) or --quota MINUTES")
    return await store.update_project(project.id, changes=changes)


def _factors_column(project: Project) -> str:
    tariff = project.tariff
    return factors_text({z.value: tariff.factor(z) for z in RATED_ZONES if tariff.factor(z) != 1000})


def zone_rows(project: Project) -> list[dict[str, Any]]:
    """Each zone with its factor, for tables and --json."""
    rows = [{"zone": z.value, "factor_pm": project.tariff.factor(z)} for z in RATED_ZONES]
    rows.append({"zone": Zone.INTERNAL.value, "factor_pm": 1000})
    return rows
