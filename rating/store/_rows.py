"""Routing settings as the store keeps them (plain text columns any backend can hold)
and back: shared by every backend, so SQLite and PostgreSQL read them alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import phonenumbers
import phonenumbers.timezone

from ..billing import BillingRule, format_money
from ..errors import AlreadyExists, InvalidInput, NotFound
from ..models import Card, Cdr, Payment, Project
from ..routes import DestinationPolicy, NumberKind, OfficeHours, Route, parse_conditions
from ..zones import RATED_ZONES, ZoneTariff

__all__ = ["ROUTE_COLS", "cdr_values", "check_correction", "default_timezone", "factors_text", "kinds_text",
           "HookFailed", "new_card", "parse_factors", "policy_of", "route_of", "tariff_of"]

T = TypeVar("T")

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
             " number_type, factor_pm, quota_used_s, price_per_minute_cents, currency")
# A CDR written without its price gets its project's price of the moment it is written
# (the call was rated at it); ``cdr_values`` gives the parameters in this order.
_CDR_INSERT = (f"INSERT INTO cdrs ({_CDR_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
               " COALESCE(?, (SELECT p.price_per_minute_cents FROM projects p WHERE p.id = ?)),"
               " COALESCE(?, (SELECT p.currency FROM projects p WHERE p.id = ?)))")
_PROJECT_COLS = ("id, name, service, fallback, ring_timeout_s, language, region, price_per_minute_cents,"
                 " currency, connect_s, minimum_s, initial_s, increment_s, warning_s, pin_length,"
                 " max_bound_numbers, max_simultaneous_calls, card_validity_days, timezone, trunk,"
                 " allow_countries, block_types, zone_factors, quota_s, evict_oldest_binding,"
                 " new_pin_when_used_up")
# The operator's payments and their corrections (migration 8): a correction is a payments
# row whose ``corrects`` names the payment; its positive amount is taken back.
_PAID_SUM = "COALESCE(SUM(CASE WHEN corrects IS NULL THEN amount_cents ELSE -amount_cents END), 0)"
_PAYMENT_COLS = ("p.id, p.at_ms, p.amount_cents, p.currency, p.reference, p.entered_by, p.corrects,"
                 " (SELECT COALESCE(SUM(c.amount_cents), 0) FROM payments c WHERE c.corrects = p.id)")
# The payments part of the account's lines (``AccountLine`` order, then the sort keys).
_PAYMENT_LINES = ("SELECT at_ms, CASE WHEN corrects IS NULL THEN 'payment' ELSE 'correction' END,"
                  " CASE WHEN corrects IS NULL THEN -amount_cents ELSE amount_cents END, NULL, NULL, 0,"
                  " reference, entered_by, id, corrects, 1, id FROM payments")


def _payment(row: Sequence[Any]) -> Payment:
    return Payment(id=row[0], at_ms=row[1], amount_cents=row[2], currency=row[3], reference=row[4],
                   entered_by=row[5], corrects=row[6], corrected_cents=int(row[7]))


def check_correction(payment: Payment | None, payment_id: int, amount_cents: int) -> None:
    """Inside the correcting transaction: a correction names a payment (not a correction)
    and takes back at most what is left of it. Raises NotFound, InvalidInput."""
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    if payment.corrects is not None:
        raise InvalidInput(f"entry {payment_id} is a correction of payment {payment.corrects}, not a payment:"
                           f" correct payment {payment.corrects} itself")
    if amount_cents > payment.left_cents:
        def money(cents: int) -> str:
            return format_money(cents, payment.currency)
        taken = f" ({money(payment.corrected_cents)} corrected already)" if payment.corrected_cents else ""
        raise InvalidInput(f"payment {payment_id} was {money(payment.amount_cents)}{taken}: at most"
                           f" {money(payment.left_cents)} of it can be corrected, not {money(amount_cents)}")


class HookFailed(Exception):  # noqa: N818 - a carrier, never seen outside the store
    """What a caller's ``before_commit`` raised, carried unchanged through a backend's
    error translation (PostgreSQL's would call an OSError the store's): the transaction
    rolls back and the store raises the original (``__cause__``)."""


def run_hook(hook: Callable[[T], None] | None, value: T) -> None:
    if hook is not None:
        try:
            hook(value)
        except Exception as exc:
            raise HookFailed from exc


def no_free_pin(made: int, count: int) -> AlreadyExists:
    return AlreadyExists(f"no free PIN left for card {made + 1} of {count}: nothing was bought")


def cdr_values(cdr: Cdr) -> tuple[Any, ...]:
    """The parameters of ``_CDR_INSERT`` for ``cdr``."""
    return (cdr.uniqueid, cdr.project_id, cdr.card_id, cdr.caller_raw, cdr.caller_e164, cdr.dialled,
            cdr.destination, cdr.start_ms, cdr.answer_ms, cdr.end_ms, cdr.talk_s, cdr.debited_s,
            cdr.outcome, cdr.hangup_side, cdr.call_type, cdr.route_position, cdr.leg, cdr.zone, cdr.number_type,
            cdr.factor_pm, cdr.quota_used_s, cdr.price_per_minute_cents, cdr.project_id, cdr.currency,
            cdr.project_id)


# A batch's card: skipped (no row) when its PIN hash is taken in the project, then drawn again.
_CARD_INSERT_FREE = ("INSERT INTO cards (project_id, note, pin_hash, balance_s, price_cents, created_ms, expires_ms)"
                     " VALUES (?,?,?,?,?,?,?) ON CONFLICT (project_id, pin_hash) DO NOTHING")
_PURCHASE_INSERT = ("INSERT INTO ledger (card_id, at_ms, kind, seconds, amount_cents, reference)"
                    " VALUES (?, ?, 'purchase', ?, ?, '')")


def new_card(card_id: int, *, project_id: int, note: str, seconds: int, price_cents: int, now_ms: int,
             expires_ms: int | None) -> Card:
    """The card ``_CARD_INSERT_FREE`` just wrote (the schema's defaults for the rest)."""
    return Card(id=card_id, project_id=project_id, note=note, blocked=False, balance_s=seconds, reserved_s=0,
                active_calls=0, price_cents=price_cents, created_ms=now_ms, activated_ms=None, expires_ms=expires_ms)


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
