"""What operators do, in one place for the CLI and the demo: buy cards, bind numbers,
block numbers. Validates input and raises ``rating.errors`` with a clear message."""

from __future__ import annotations

from dataclasses import dataclass

from agi import check_dial_string
from rating.billing import BillingRule, price_cents
from rating.errors import AlreadyExists, InvalidInput, NotFound
from rating.models import BlacklistEntry, Card, Project
from rating.numbers import compile_pattern, normalise_number
from rating.pins import generate_pin, pin_hash
from rating.store.sqlite import SqliteStore

LANGUAGES = ("de", "en")
MAX_MINUTES = 9999 * 60


@dataclass(frozen=True)
class NewCard:
    card: Card
    pin: str   # shown once, never stored in clear


async def create_project(store: SqliteStore, *, name: str, numbers: list[str], service: str,
                         fallback: str | None = None, language: str = "de", region: str = "DE",
                         price_per_minute_cents: int = 0, currency: str = "EUR",
                         rule: BillingRule = BillingRule(), ring_timeout_s: int = 30, warning_s: int = 60,
                         pin_length: int = 8, max_bound_numbers: int = 3, max_simultaneous_calls: int = 1,
                         card_validity_days: int | None = None, now_ms: int) -> Project:
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput(f"project name {name!r}: letters, digits, - and _ only")
    if language not in LANGUAGES:
        raise InvalidInput(f"language {language!r}: choose one of {', '.join(LANGUAGES)}")
    region = region.upper()
    if not numbers:
        raise InvalidInput("a project needs at least one access number (--number)")
    e164 = [normalise_number(n, region) for n in numbers]
    for dial_string in [service] + ([fallback] if fallback else []):
        try:
            check_dial_string(dial_string)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    if not 4 <= pin_length <= 16:
        raise InvalidInput("PIN length must be between 4 and 16")
    if ring_timeout_s < 1 or max_bound_numbers < 1 or max_simultaneous_calls < 1 or warning_s < 0:
        raise InvalidInput("ring timeout, bound numbers and simultaneous calls must be >= 1; warning >= 0")
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput(f"currency {currency!r}: a three-letter code such as EUR or CHF")
    return await store.create_project(
        name=name, numbers=e164, service=service, fallback=fallback, ring_timeout_s=ring_timeout_s,
        language=language, region=region, price_per_minute_cents=price_per_minute_cents,
        currency=currency.upper(), rule=rule, warning_s=warning_s, pin_length=pin_length,
        max_bound_numbers=max_bound_numbers, max_simultaneous_calls=max_simultaneous_calls,
        card_validity_days=card_validity_days, now_ms=now_ms)


async def project(store: SqliteStore, name: str) -> Project:
    found = await store.project_by_name(name)
    if found is None:
        raise NotFound(f"no project {name!r}")
    return found


def check_minutes(minutes: int) -> int:
    if not 0 < minutes <= MAX_MINUTES:
        raise InvalidInput(f"minutes must be between 1 and {MAX_MINUTES}, not {minutes}")
    return minutes


async def create_card(store: SqliteStore, secret: bytes, *, project: Project, minutes: int, note: str,
                      now_ms: int) -> NewCard:
    seconds = check_minutes(minutes) * 60
    price = price_cents(seconds, project.price_per_minute_cents)
    expires = now_ms + project.card_validity_days * 86_400_000 if project.card_validity_days else None
    for _ in range(20):  # a PIN collision in the project: draw again
        pin = generate_pin(project.pin_length)
        try:
            card = await store.create_card(project_id=project.id, note=note,
                                           pin_hash=pin_hash(secret, project.id, pin), seconds=seconds,
                                           price_cents=price, now_ms=now_ms, expires_ms=expires)
            return NewCard(card=card, pin=pin)
        except AlreadyExists:
            continue
    raise InvalidInput("could not find a free PIN: raise the project's PIN length")


async def card(store: SqliteStore, card_id: str) -> Card:
    if not card_id.isdigit():
        raise InvalidInput(f"card id {card_id!r} is not a number")
    return await store.card(int(card_id))


async def bind(store: SqliteStore, *, card: Card, number: str, now_ms: int) -> str:
    proj = await store.project_by_id(card.project_id)
    assert proj is not None
    e164 = normalise_number(number, proj.region)
    await store.bind(project_id=proj.id, caller=e164, card_id=card.id, now_ms=now_ms, source="operator",
                     max_bound=proj.max_bound_numbers)
    return e164


async def blacklist_add(store: SqliteStore, *, project: Project | None, pattern: str, direction: str,
                        reason: str, now_ms: int) -> BlacklistEntry:
    compile_pattern(pattern)
    if direction not in ("inbound", "outbound"):
        raise InvalidInput("direction must be inbound or outbound")
    return await store.blacklist_add(project_id=project.id if project else None, pattern=pattern,
                                     direction=direction, reason=reason, now_ms=now_ms)
