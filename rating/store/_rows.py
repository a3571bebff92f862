"""Routing settings as the store keeps them (plain text columns any backend can hold)
and back: shared by every backend, so SQLite and PostgreSQL read them alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import phonenumbers
import phonenumbers.timezone

from ..routes import DestinationPolicy, NumberKind, OfficeHours, Route, parse_conditions
from ..zones import RATED_ZONES, ZoneTariff

__all__ = ["ROUTE_COLS", "default_timezone", "factors_text", "kinds_text", "parse_factors", "policy_of",
           "route_of", "tariff_of"]

ROUTE_COLS = "project_id, position, destination, conditions, hours, closed_on, ring_timeout_s"


def default_timezone(region: str) -> str:
    """The time zone of the project's country (phonenumbers' first for an example number), else UTC."""
    example = phonenumbers.example_number(region)
    if example is not None:
        zones = phonenumbers.timezone.time_zones_for_number(example)
        if zones and zones[0] != "Etc/Unknown":
            return str(zones[0])
    return "UTC"


def route_of(row: Sequence[Any]) -> Route:
    """A ``routes`` row (``ROUTE_COLS``) as a Route."""
    hours = OfficeHours.parse(row[4], row[5]) if row[4] else None
    return Route(position=row[1], destination=row[2], conditions=parse_conditions(row[3]), hours=hours,
                 ring_timeout_s=row[6])


def policy_of(countries: str, kinds: str) -> DestinationPolicy:
    return DestinationPolicy(countries=tuple(c for c in countries.split(",") if c),
                             blocked_kinds=tuple(NumberKind(k) for k in kinds.split(",") if k))


def kinds_text(kinds: Sequence[NumberKind]) -> str:
    return ",".join(k.value for k in kinds)


def parse_factors(text: str) -> dict[str, int]:
    """``"national=1200,eu=1300"`` -> {"national": 1200, "eu": 1300} (as the column holds it)."""
    out: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        zone, _, value = item.partition("=")
        out[zone] = int(value)
    return out


def factors_text(factors: dict[str, int]) -> str:
    return ",".join(f"{z.value}={factors[z.value]}" for z in RATED_ZONES if z.value in factors)


def tariff_of(factors: str, quota_s: int) -> ZoneTariff:
    return ZoneTariff(**parse_factors(factors), quota_s=quota_s)
