"""Projects: access numbers (E.164 and national forms), service, prices and rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import phonenumbers

from agi import check_dial_string
from rating.billing import DECIMALS_NOT_TWO, PER_SECOND, BillingRule
from rating.errors import AlreadyExists, InvalidInput, NotFound
from rating.models import Project
from rating.numbers import normalise_number, parse_caller
from rating.regions import default_currency, project_region
from rating.routes import check_timezone, render_trunk
from rating.store.base import OperatorStore

from ._common import _SEPARATORS, LANGUAGES, CurrencyMismatch
from .blacklist import pin_national_blocks


# --- numbers ----------------------------------------------------------------
def normalise(text: str, region: str) -> str:
    """An operator-typed number (E.164, 00…, or national with the trunk prefix; spaces,
    dashes and slashes allowed) in E.164. Raises InvalidInput, also for digits no
    numbering plan has (``12``: phonenumbers' length check for the country)."""
    e164 = normalise_number(text.translate(_SEPARATORS), region)
    parsed = phonenumbers.parse(e164, None)  # normalise_number returned E.164: it parses
    # Short codes aside (never an access number or a caller to bind), no national number has
    # fewer than 5 digits; phonenumbers' own check knows each country's lengths.
    if len(str(parsed.national_number)) < 5 or not phonenumbers.is_possible_number(parsed):
        raise InvalidInput(f"not a phone number: {text!r} (too short or too long for"
                           f" {phonenumbers.region_code_for_number(parsed) or 'its country'})")
    return e164


def national_form(e164: str, region: str) -> str:
    """The national form with the trunk prefix, digits only (``0441234567``)."""
    return parse_caller(e164, region).national or e164


# --- projects ---------------------------------------------------------------
# (lowest, highest, label): the highest keeps a typo (an extra digit, 20 digits) from being
# stored — a 99999999999 s ring timeout overflows the store, a minimum of 999999999 s makes
# every card answer "no credit".
_INT_SETTINGS = {
    "ring_timeout_s": (1, 600, "ring timeout"), "max_bound_numbers": (1, 100, "max bound numbers"),
    "max_simultaneous_calls": (1, 100, "simultaneous calls"), "warning_s": (0, 3600, "warning"),
    "price_per_minute_cents": (0, 99_999_999_999, "price per minute"),
    "card_validity_days": (1, 36_500, "card validity days"),
    "connect_s": (0, 3600, "connect charge"), "minimum_s": (0, 3600, "minimum"),
    "initial_s": (1, 3600, "initial block"), "increment_s": (1, 3600, "increment"),
}


def check_project_values(values: Mapping[str, Any]) -> None:
    """Validate the project settings present in ``values``. Raises InvalidInput."""
    if "language" in values and values["language"] not in LANGUAGES:
        raise InvalidInput(f"language {values['language']!r}: choose one of {', '.join(LANGUAGES)}")
    if "region" in values and values["region"] not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInput(f"region {values['region']!r}: an ISO country code such as CH, DE or AT")
    for key in ("service", "fallback"):
        if values.get(key) is not None:
            try:
                check_dial_string(values[key])
            except ValueError as exc:
                raise InvalidInput(f"{key}: {exc}") from None
    if "pin_length" in values and not 4 <= values["pin_length"] <= 16:
        raise InvalidInput("PIN length must be between 4 and 16")
    for key, (lowest, highest, label) in _INT_SETTINGS.items():
        if values.get(key) is not None and values[key] < lowest:
            raise InvalidInput(f"{label} must be at least {lowest}, not {values[key]}")
        if values.get(key) is not None and values[key] > highest:
            raise InvalidInput(f"{label} must be at most {highest}, not {values[key]}")
    currency = values.get("currency")
    if currency is not None and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        raise InvalidInput(f"currency {currency!r}: a three-letter code such as EUR or CHF")
    if currency is not None and currency.upper() in DECIMALS_NOT_TWO:
        raise InvalidInput(f"currency {currency.upper()} has {DECIMALS_NOT_TWO[currency.upper()]} decimals;"
                           " this engine keeps money in hundredths: use a currency with two decimals")


def check_routing_values(values: Mapping[str, Any], project: Project) -> None:
    """The routing settings of ``ivr project update`` (``timezone``, ``trunk``). Raises InvalidInput."""
    if "timezone" in values:
        check_timezone(values["timezone"])
    trunk = values.get("trunk")
    if trunk:
        try:
            check_dial_string(render_trunk(trunk, "+41441234567", project.region))
        except ValueError as exc:
            raise InvalidInput(f"trunk: {exc}") from None


def billing_rule(connect_s: int, minimum_s: int, initial_s: int, increment_s: int) -> BillingRule:
    try:
        return BillingRule(connect_s=connect_s, minimum_s=minimum_s, initial_s=initial_s,
                           increment_s=increment_s)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


async def _check_account_currency(store: OperatorStore, currency: str, *, what: str) -> None:
    account = (await store.account_settings()).currency
    if account is not None and account != currency:
        raise CurrencyMismatch(f"{what} is in {currency}, but this database's account is kept in {account};"
                               " one account has one currency (use another database for another currency)")


async def _free_numbers(store: OperatorStore, numbers: Iterable[str]) -> None:
    for number in numbers:
        owner = await store.access_number_owner(number)
        if owner is not None:
            raise AlreadyExists(f"{number} is already an access number of project {owner}")


async def create_project(store: OperatorStore, *, name: str, numbers: list[str], service: str,
                         fallback: str | None = None, language: str = "de", region: str | None = None,
                         price_per_minute_cents: int = 0, currency: str | None = None,
                         rule: BillingRule = PER_SECOND, ring_timeout_s: int = 30, warning_s: int = 60,
                         pin_length: int = 12, max_bound_numbers: int = 3, max_simultaneous_calls: int = 1,
                         card_validity_days: int | None = None, now_ms: int) -> Project:
    """Create a project; its currency becomes the account's if the account has none yet.
    Without ``region``, the country of the first access number in E.164; without
    ``currency``, the account's, else the region's (``rating.regions``).

    Raises:
        InvalidInput (also: national numbers and no region; no currency known for the region),
        CurrencyMismatch, AlreadyExists (name or access number taken).
    """
    if not name or not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        raise InvalidInput(f"project name {name!r}: letters, digits, - and _ only")
    if not numbers:
        raise InvalidInput("a project needs at least one access number (--number)")
    region = project_region([n.translate(_SEPARATORS) for n in numbers], region)
    check_project_values({"region": region})
    if currency is None:
        currency = (await store.account_settings()).currency or default_currency(region)
    currency = currency.upper()
    check_project_values({
        "language": language, "region": region, "service": service, "fallback": fallback,
        "pin_length": pin_length, "ring_timeout_s": ring_timeout_s, "warning_s": warning_s,
        "max_bound_numbers": max_bound_numbers, "currency": currency,
        "max_simultaneous_calls": max_simultaneous_calls, "price_per_minute_cents": price_per_minute_cents,
        "card_validity_days": card_validity_days, "connect_s": rule.connect_s, "minimum_s": rule.minimum_s,
        "initial_s": rule.initial_s, "increment_s": rule.increment_s})
    e164 = list(dict.fromkeys(normalise(n, region) for n in numbers))
    if await store.project_by_name(name) is not None:
        raise AlreadyExists(f"project {name!r} exists already")
    await _free_numbers(store, e164)
    await _check_account_currency(store, currency, what=f"project {name}")
    project = await store.create_project(
        name=name, numbers=e164, service=service, fallback=fallback, ring_timeout_s=ring_timeout_s,
        language=language, region=region, price_per_minute_cents=price_per_minute_cents,
        currency=currency, rule=rule, warning_s=warning_s, pin_length=pin_length,
        max_bound_numbers=max_bound_numbers, max_simultaneous_calls=max_simultaneous_calls,
        card_validity_days=card_validity_days, now_ms=now_ms)
    await store.claim_account_currency(project.currency)
    return project


async def update_project(store: OperatorStore, project: Project, *, values: Mapping[str, Any],
                         add_numbers: Sequence[str] = (), remove_numbers: Sequence[str] = ()) -> Project:
    """Change only the given settings (keys as in the store: ``connect_s``, ``warning_s`` …;
    ``fallback`` or ``card_validity_days`` None clears them) and access numbers.

    Raises:
        InvalidInput: a bad value, nothing to change, the PIN length of a project with cards.
        CurrencyMismatch, AlreadyExists, NotFound (a number to remove is not the project's).
    """
    values = {k: (v.upper() if k in ("region", "currency") and v else v) for k, v in values.items()}
    if not values and not add_numbers and not remove_numbers:
        raise InvalidInput("nothing to change: give at least one option")
    check_project_values(values)
    check_routing_values(values, project)
    rule = project.rule
    billing_rule(values.get("connect_s", rule.connect_s), values.get("minimum_s", rule.minimum_s),
                 values.get("initial_s", rule.initial_s), values.get("increment_s", rule.increment_s))
    if values.get("pin_length", project.pin_length) != project.pin_length and await store.cards(project.id):
        raise InvalidInput(f"project {project.name} has cards whose PINs have {project.pin_length} digits;"
                           " the PIN length can only change before the first card")
    if "currency" in values:
        await _check_account_currency(store, values["currency"], what=f"project {project.name}")
    region = values.get("region", project.region)
    added = list(dict.fromkeys(normalise(n, region) for n in add_numbers))
    removed = list(dict.fromkeys(normalise(n, project.region) for n in remove_numbers))
    await _free_numbers(store, [n for n in added if n not in project.numbers])
    added = [n for n in added if n not in project.numbers or n in removed]
    if region != project.region:
        # Numbers are stored in E.164 and keep their country; blocks stored nationally
        # before issue 12 would change country with the region, so they are pinned first.
        await pin_national_blocks(store, project)
    return await store.update_project(project.id, changes=values, add_numbers=added, remove_numbers=removed)


async def project(store: OperatorStore, name: str) -> Project:
    found = await store.project_by_name(name)
    if found is None:
        raise NotFound(f"no project {name!r}")
    return found
