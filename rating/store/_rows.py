"""Routing settings as the store keeps them (plain text columns any backend can hold)
and back: shared by every backend, so SQLite and PostgreSQL read them alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import phonenumbers
import phonenumbers.timezone

from ..billing import BillingRule
from ..models import Card, Project
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


# Columns and row mappers every backend shares (the same SQL text and tuple order).
_CARD_COLS = ("id, project_id, note, blocked, balance_s, reserved_s, active_calls, price_cents, "
              "created_ms, activated_ms, expires_ms")
PIN_FAILURE_RETENTION_MS = 7 * 86_400_000
# Project columns ``update_project`` may change (the name and id never change).
_PROJECT_UPDATABLE = frozenset({
    "service", "fallback", "ring_timeout_s", "language", "region", "price_per_minute_cents", "currency",
    "connect_s", "minimum_s", "initial_s", "increment_s", "warning_s", "pin_length", "max_bound_numbers",
    "max_simultaneous_calls", "card_validity_days", "timezone", "trunk", "allow_countries", "block_types",
    "zone_factors", "quota_s", "evict_oldest_binding", "new_pin_when_used_up"})
_ACCOUNT_UPDATABLE = frozenset({"currency", "info_limit_cents", "lock_limit_cents", "suspend_calls"})
_BLOCKED_COLS = "id, project_id, pattern, direction, reason, created_ms, added_by"
_CDR_COLS = ("uniqueid, project_id, card_id, caller_raw, caller_e164, dialled, destination, start_ms,"
             " answer_ms, end_ms, talk_s, debited_s, outcome, hangup_side, call_type, route_position, leg, zone,"
             " number_type, factor_pm, quota_used_s")
_PROJECT_COLS = ("id, name, service, fallback, ring_timeout_s, language, region, price_per_minute_cents,"
                 " currency, connect_s, minimum_s, initial_s, increment_s, warning_s, pin_length,"
                 " max_bound_numbers, max_simultaneous_calls, card_validity_days, timezone, trunk,"
                 " allow_countries, block_types, zone_factors, quota_s, evict_oldest_binding,"
                 " new_pin_when_used_up")
def _card(row: Sequence[Any]) -> Card:
    return Card(id=row[0], project_id=row[1], note=row[2], blocked=bool(row[3]), balance_s=row[4],
                reserved_s=row[5], active_calls=row[6], price_cents=row[7], created_ms=row[8],
                activated_ms=row[9], expires_ms=row[10])


def _project(r: Sequence[Any], numbers: tuple[str, ...], routes: tuple[Route, ...]) -> Project:
    return Project(id=r[0], name=r[1], numbers=numbers, service=r[2], fallback=r[3], ring_timeout_s=r[4],
                   language=r[5], region=r[6], price_per_minute_cents=r[7], currency=r[8],
                   rule=BillingRule(connect_s=r[9], minimum_s=r[10], initial_s=r[11], increment_s=r[12]),
                   warning_s=r[13], pin_length=r[14], max_bound_numbers=r[15],
                   max_simultaneous_calls=r[16], card_validity_days=r[17], routes=routes,
                   timezone=r[18] or default_timezone(r[6]), trunk=r[19], policy=policy_of(r[20], r[21]),
                   tariff=tariff_of(r[22], r[23]), evict_oldest_binding=bool(r[24]),
                   new_pin_when_used_up=bool(r[25]))
