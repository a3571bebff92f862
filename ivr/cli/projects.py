"""``ivr project create|list|show|update``: access numbers, service, prices and rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from rating.models import BlockedNumber, CardStatus, Project
from rating.numbers import region_of_number
from rating.store.base import OperatorStore
from rating.zones import RATED_ZONES

from .. import operations as ops
from ..clock import SystemClock
from ..settings import Settings
from ._app import emit, json_option, main, note, with_store
from ._format import long_duration, money, national_display, parse_amount, table
from .routes import route_dict, route_table, times, zone_table, zones_dict


@main.group()
def project() -> None:
    """Projects: access numbers, service, prices and rules."""


def project_dict(p: Project) -> dict[str, Any]:
    """The stable JSON shape of a project."""
    return {
        "name": p.name,
        "numbers": [{"e164": n, "national": ops.national_form(n, p.region)} for n in p.numbers],
        "service": p.service, "fallback": p.fallback, "ring_timeout_s": p.ring_timeout_s,
        "language": p.language, "region": p.region,
        "price_per_minute_cents": p.price_per_minute_cents, "currency": p.currency,
        "connect_charge_s": p.rule.connect_s, "minimum_s": p.rule.minimum_s,
        "initial_block_s": p.rule.initial_s, "increment_s": p.rule.increment_s,
        "warning_s": p.warning_s, "pin_length": p.pin_length, "max_bound_numbers": p.max_bound_numbers,
        "max_simultaneous_calls": p.max_simultaneous_calls, "card_validity_days": p.card_validity_days,
        "when_bindings_full": "evict" if p.evict_oldest_binding else "refuse",
        "when_card_used_up": "new-pin" if p.new_pin_when_used_up else "end",
        "timezone": p.timezone, "trunk": p.trunk or None, "allow_countries": list(p.policy.countries),
        "blocked_number_types": [k.value for k in p.policy.blocked_kinds],
        "routes": [route_dict(r, p) for r in p.routes], **{k: v for k, v in zones_dict(p).items() if k != "project"},
    }


# (label, how to show it) for each setting people read
_LABELS: list[tuple[str, str, Callable[[Project], str]]] = [
    ("numbers", "access numbers", lambda p: ", ".join(f"{n} ({national_display(n)})" for n in p.numbers)),
    ("service", "service", lambda p: p.service),
    ("fallback", "fallback", lambda p: p.fallback or "-"),
    ("ring_timeout_s", "ring timeout", lambda p: f"{p.ring_timeout_s} s"),
    ("language", "language", lambda p: p.language),
    ("region", "region", lambda p: p.region),
    ("price", "price per minute", lambda p: money(p.price_per_minute_cents, p.currency)),
    ("rule", "billing", lambda p: f"connect charge {p.rule.connect_s} s, minimum {p.rule.minimum_s} s,"
                                  f" first block {p.rule.initial_s} s, then every {p.rule.increment_s} s"),
    ("warning_s", "warning", lambda p: f"{p.warning_s} s before the cut-off" if p.warning_s else "none"),
    ("pin_length", "PIN length", lambda p: f"{p.pin_length} digits"),
    ("max_bound_numbers", "bound numbers", lambda p: f"at most {p.max_bound_numbers} per card"),
    ("evict_oldest_binding", "when bindings full",
     lambda p: "a PIN call drops the oldest number" if p.evict_oldest_binding
     else "a PIN call from another line is not bound"),
    ("new_pin_when_used_up", "bound card used up",
     lambda p: "the caller may type another card's PIN" if p.new_pin_when_used_up
     else "the call ends after the reason"),
    ("max_simultaneous_calls", "simultaneous calls", lambda p: f"at most {p.max_simultaneous_calls} per card"),
    ("card_validity_days", "card validity",
     lambda p: f"{p.card_validity_days} days from purchase" if p.card_validity_days else "unlimited"),
    ("timezone", "time zone", lambda p: p.timezone),
    ("trunk", "trunk", lambda p: p.trunk or "none (numbers cannot be dialled)"),
    ("allow_countries", "allowed countries", lambda p: ", ".join(p.policy.countries) or "none"),
    ("block_types", "blocked types",
     lambda p: ", ".join(k.value for k in p.policy.blocked_kinds) or "none"),
    ("zone_factors", "zone factors", lambda p: ", ".join(
        f"{z.value} {times(p.tariff.factor(z))}" for z in RATED_ZONES if p.tariff.factor(z) != 1000) or "none"),
    ("quota_s", "included quota",
     lambda p: f"{p.tariff.quota_s // 60} min per card and month" if p.tariff.quota_s else "none"),
    ("routes", "rules", lambda p: "; ".join(f"{r.position}. {r.destination} ({r.conditions_text()}"
                                             f"{', ' + r.hours.text() if r.hours else ''})" for r in p.routes)),
]


_WIDTH = max(len(label) for _, label, _ in _LABELS) + 1


def field_line(label: str, value: str) -> str:
    return f"  {(label + ':').ljust(_WIDTH)} {value}"


def describe(p: Project) -> list[str]:
    return [field_line(label, show(p)) for _, label, show in _LABELS]


def changes(before: Project, after: Project) -> list[str]:
    out = []
    for _, label, show in _LABELS:
        if show(before) != show(after):
            out.append(f"  {label}: {show(before)} -> {show(after)}")
    return out


def _number_option(*names: str, **kwargs: Any) -> Callable[[Any], Any]:
    return click.option(*names, multiple=True, metavar="NUMBER", **kwargs)


def setting_options(*, create: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The settings ``create`` and ``update`` share; ``update`` has no defaults, so only the
    options given change anything."""
    def default(value: Any) -> dict[str, Any]:
        return {"default": value, "show_default": True} if create else {"default": None}

    options = [
        click.option("--service", required=create, help="Asterisk dial string of the service, e.g. PJSIP/100@office."),
        click.option("--fallback", help="Dial string tried when the service is busy or does not answer."),
        click.option("--ring-timeout", type=int, help="Seconds the service may ring.", **default(30)),
        click.option("--language", type=click.Choice(ops.LANGUAGES), help="Language of the prompts callers hear.",
                     **default("de")),
        click.option("--region", help="Country of national numbers (CH, DE, AT …)"
                     + ("; default: the country of the first --number in E.164 (+41… is CH)." if create else
                        "; numbers already stored keep their country (they are kept in E.164).")),
        click.option("--price-per-minute", help="Card price per minute, e.g. 0.50.", **default("0")),
        click.option("--currency", help="Three letters, e.g. CHF or EUR"
                     + ("; default: the account's, else the region's (CHF for CH, EUR for DE …)." if create
                        else ".")),
        click.option("--connect-charge", type=int, help="Seconds charged per answered call.", **default(0)),
        click.option("--minimum", type=int, help="Minimum billable seconds of an answered call.", **default(0)),
        click.option("--initial-block", type=int, help="Seconds of the first billing block.", **default(1)),
        click.option("--increment", type=int, help="Seconds of every further block.", **default(1)),
        click.option("--warning", type=int, help="Seconds before the cut-off to warn (0: none).", **default(60)),
        click.option("--pin-length", type=int, help="Digits of a card's PIN (see 'PIN guessing' in project show).",
                     **default(12)),
        click.option("--max-bound-numbers", type=int, help="Caller numbers one card may have.", **default(3)),
        click.option("--max-calls", type=int, help="Simultaneous calls per card.", **default(1)),
        click.option("--validity-days", type=int, help="Cards expire this many days after purchase."),
    ]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def _price(text: str | None) -> int | None:
    return None if text is None else parse_amount(text, option="--price-per-minute")


@project.command("create")
@click.argument("name")
@_number_option("--number", "numbers", required=True,
                help="Access number, E.164 (+41441234567) or national (0441234567); repeatable.")
@setting_options(create=True)
@json_option
@with_store
async def project_create(store: OperatorStore, settings: Settings, *, name: str, numbers: tuple[str, ...],
                         service: str, fallback: str | None, language: str, region: str | None,
                         price_per_minute: str, currency: str | None, ring_timeout: int, connect_charge: int,
                         minimum: int, initial_block: int, increment: int, warning: int, pin_length: int,
                         max_bound_numbers: int, max_calls: int, validity_days: int | None,
                         as_json: bool) -> None:
    """Create a project."""
    rule = ops.billing_rule(connect_charge, minimum, initial_block, increment)
    p = await ops.create_project(
        store, name=name, numbers=list(numbers), service=service, fallback=fallback, language=language,
        region=region, price_per_minute_cents=_price(price_per_minute) or 0, currency=currency, rule=rule,
        ring_timeout_s=ring_timeout, warning_s=warning, pin_length=pin_length,
        max_bound_numbers=max_bound_numbers, max_simultaneous_calls=max_calls,
        card_validity_days=validity_days, now_ms=SystemClock().now_ms())
    emit(as_json, project_dict(p), [f"project {p.name} created", *describe(p)])


@project.command("update")
@click.argument("name")
@_number_option("--add-number", "add_numbers", help="Another access number; repeatable.")
@_number_option("--remove-number", "remove_numbers", help="Stop answering this access number; repeatable.")
@setting_options(create=False)
@click.option("--no-fallback", is_flag=True, help="Remove the fallback.")
@click.option("--no-validity", is_flag=True, help="New cards never expire.")
@click.option("--when-bindings-full", type=click.Choice(["refuse", "evict"]),
              help="A PIN call from a new line when the card has its bound numbers: refuse to bind it"
                   " (default) or drop the card's oldest number.")
@click.option("--when-card-used-up", type=click.Choice(["end", "new-pin"]),
              help="A call from a bound line whose card is used up or expired: end after the reason"
                   " (default), or offer to type another card's PIN (silence ends the call).")
@click.option("--allow-countries", help="Countries numbers may be dialled in: DE,AT,CH,FR,PL (ISO codes).")
@click.option("--block-types", help="Number types never dialled: premium_rate,shared_cost,personal,uan,"
                                    "satellite (or none).")
@click.option("--trunk", help="How numbers are dialled: PJSIP/{e164}@carrier ({international}, {national}).")
@click.option("--timezone", help="The office hours' time zone, e.g. Europe/Zurich.")
@json_option
@with_store
async def project_update(store: OperatorStore, settings: Settings, *, name: str, add_numbers: tuple[str, ...],
                         remove_numbers: tuple[str, ...], no_fallback: bool, no_validity: bool,
                         allow_countries: str | None, block_types: str | None, trunk: str | None,
                         timezone: str | None, as_json: bool, **options: Any) -> None:
    """Change only the options given (prices apply to cards bought from now on)."""
    if no_fallback and options["fallback"] is not None:
        raise click.UsageError("--fallback and --no-fallback exclude each other")
    if no_validity and options["validity_days"] is not None:
        raise click.UsageError("--validity-days and --no-validity exclude each other")
    before = await ops.project(store, name)
    values = _store_values(options)
    if no_fallback:
        values["fallback"] = None
    if no_validity:
        values["card_validity_days"] = None
    if options.get("when_bindings_full") is not None:
        values["evict_oldest_binding"] = int(options["when_bindings_full"] == "evict")
    if options.get("when_card_used_up") is not None:
        values["new_pin_when_used_up"] = int(options["when_card_used_up"] == "new-pin")
    if allow_countries is not None:
        values["allow_countries"] = ops.parse_countries(allow_countries)
    if block_types is not None:
        values["block_types"] = ops.parse_kinds(block_types)
    if trunk is not None:
        values["trunk"] = trunk.strip()
    if timezone is not None:
        values["timezone"] = timezone.strip()
    region = (values.get("region") or before.region).upper()
    pinned = await ops.national_blocks(store, before) if region != before.region else []
    after = await ops.update_project(store, before, values=values, add_numbers=add_numbers,
                                     remove_numbers=remove_numbers)
    lines = changes(before, after)
    emit(as_json, project_dict(after), [f"project {after.name} updated", *(lines or ["  nothing changed"])])
    if after.region != before.region:
        _note_region_change(before, after, pinned)


def _note_region_change(before: Project, after: Project, pinned: list[tuple[BlockedNumber, str]]) -> None:
    """Say what a new region does not change: stored numbers keep their country."""
    for entry, key in pinned:
        note(f"note: blocked {entry.pattern} kept its meaning {key} ({before.region}); national numbers"
             f" typed from now on mean {after.region}")
    for number in after.numbers:
        country = region_of_number(number)
        if country != after.region:
            note(f"note: access number {number} stays a {country or 'non-geographic'} number (numbers are kept"
                 f" in E.164); if it was typed for the wrong region: --remove-number {number}"
                 f" --add-number <its national form>")


_OPTION_TO_COLUMN = {
    "service": "service", "fallback": "fallback", "ring_timeout": "ring_timeout_s", "language": "language",
    "region": "region", "currency": "currency", "connect_charge": "connect_s", "minimum": "minimum_s",
    "initial_block": "initial_s", "increment": "increment_s", "warning": "warning_s",
    "pin_length": "pin_length", "max_bound_numbers": "max_bound_numbers",
    "max_calls": "max_simultaneous_calls", "validity_days": "card_validity_days",
}


def _store_values(options: dict[str, Any]) -> dict[str, Any]:
    values = {column: options[option] for option, column in _OPTION_TO_COLUMN.items()
              if options.get(option) is not None}
    if options.get("price_per_minute") is not None:
        values["price_per_minute_cents"] = _price(options["price_per_minute"])
    return values


@project.command("list")
@json_option
@with_store
async def project_list(store: OperatorStore, settings: Settings, *, as_json: bool) -> None:
    """List projects with their access numbers and price."""
    projects = await store.projects()
    counts = {p.id: len(await store.cards(p.id)) for p in projects}
    rows = [[p.name, ", ".join(national_display(n) for n in p.numbers), p.service,
             money(p.price_per_minute_cents, p.currency), p.language, counts[p.id]] for p in projects]
    emit(as_json, [{**project_dict(p), "cards": counts[p.id]} for p in projects],
         table(["PROJECT", "ACCESS NUMBERS", "SERVICE", "PRICE/MIN", "LANG", "CARDS"], rows, right={3, 5},
               empty="no projects (create one: ivr project create NAME --number … --service …)"))


@project.command("show")
@click.argument("name")
@json_option
@with_store
async def project_show(store: OperatorStore, settings: Settings, *, name: str, as_json: bool) -> None:
    """Every setting of one project, and its cards by status."""
    p = await ops.project(store, name)
    now = SystemClock().now_ms()
    statuses = [c.status(now).value for c in await store.cards(p.id)]
    by_status = {s.value: statuses.count(s.value) for s in CardStatus}
    summary = ", ".join(f"{n} {s}" for s, n in by_status.items() if n) or "none"
    fig = await ops.guessing_figure(store, p, settings, now_ms=now)
    emit(as_json, {**project_dict(p), "cards": by_status, "guessing": guessing_dict(fig)},
         [f"project {p.name}", *[line for line in describe(p) if not line.lstrip().startswith("rules:")],
          field_line("cards", summary), field_line("PIN guessing", guessing_text(fig)), "",
          "forwarding rules (tried in this order):", *route_table(p), "", "zone factors:", *zone_table(p)])


def guessing_dict(fig: ops.GuessingFigure) -> dict[str, Any]:
    return {"expected_s_to_hit": fig.expected_s, "active_cards": fig.active_cards, "pin_length": fig.pin_length,
            "wrong_pins_per_window": fig.guesses, "window_s": fig.window_s, "too_short": fig.too_short,
            "safe_pin_length": fig.safe_pin_length}


def guessing_text(fig: ops.GuessingFigure) -> str:
    if fig.expected_s is None:
        return "nothing to guess (no active card)"
    text = (f"a hit expected after {long_duration(fig.expected_s)} at the cap of {fig.guesses} wrong PINs"
            f" per {long_duration(fig.window_s)} ({fig.active_cards} active cards, {fig.pin_length} digits)")
    if fig.too_short:
        text += (f"; TOO SHORT: new projects need {fig.safe_pin_length or 16}+ digits for a year"
                 if fig.safe_pin_length else "; TOO SHORT")
    return text
