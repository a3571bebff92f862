"""What operators do, in one place for the CLI, the demo and the engine: projects,
cards, blocked numbers, CDR reports and the operator's account.

Every function validates its input and raises ``rating.errors`` with a message
for the operator; nothing is changed when one is raised. Times are integer
milliseconds since the epoch, money integer cents, card time integer seconds.

The account's policy adds two refusals to the rating errors::

    RatingError                      (rating.errors)
     ├── InvalidInput
     │    └── CurrencyMismatch       a project or a report in another currency than the account
     └── AccountLocked               owing more than the lock limit: no purchases, no recharges

The operator's account (one per database: the operator running this engine) is
charged every card purchase and recharge — the ledger's priced rows — and
credited every payment. Owing more than the info limit makes every CLI command
warn; owing more than the lock limit refuses purchases and recharges and, when
the operator chose so, suspends new calls (``calls_suspended``).
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

import phonenumbers

from agi import check_dial_string
from rating.billing import PER_SECOND, BillingRule, format_money, price_cents
from rating.errors import AlreadyExists, CardExpired, InvalidInput, NotFound, RatingError
from rating.models import AccountLine, BlockedNumber, Card, CardStatus, Cdr, Project
from rating.numbers import compile_pattern, matches, normalise_number, parse_caller
from rating.pins import generate_pin, pin_hash
from rating.store.sqlite import SqliteStore

from .outcome import Outcome

LANGUAGES = ("de", "en")
MAX_MINUTES = 9999 * 60
MAX_BATCH = 10_000
MAX_NOTE = 200
DIRECTIONS = ("inbound", "outbound")
CARD_SORTS = ("created", "remaining", "activated")
REPORT_BY = ("month", "number", "card", "outcome", "access", "project")
_SEPARATORS = str.maketrans("", "", " -/()\t")


class CurrencyMismatch(InvalidInput):
    """The account is kept in one currency; this would mix in another."""


class AccountLocked(RatingError):
    """The account owes more than its lock limit: no purchases or recharges until a payment."""


# --- numbers ----------------------------------------------------------------
def normalise(text: str, region: str) -> str:
    """An operator-typed number (E.164, 00…, or national with the trunk prefix; spaces,
    dashes and slashes allowed) in E.164. Raises InvalidInput."""
    return normalise_number(text.translate(_SEPARATORS), region)


def national_form(e164: str, region: str) -> str:
    """The national form with the trunk prefix, digits only (``0441234567``)."""
    return parse_caller(e164, region).national or e164


# --- projects ---------------------------------------------------------------
_INT_SETTINGS = {
    "ring_timeout_s": (1, "ring timeout"), "max_bound_numbers": (1, "max bound numbers"),
    "max_simultaneous_calls": (1, "simultaneous calls"), "warning_s": (0, "warning"),
    "price_per_minute_cents": (0, "price per minute"), "card_validity_days": (1, "card validity days"),
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
    for key, (lowest, label) in _INT_SETTINGS.items():
        if values.get(key) is not None and values[key] < lowest:
            raise InvalidInput(f"{label} must be at least {lowest}, not {values[key]}")
    currency = values.get("currency")
    if currency is not None and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        raise InvalidInput(f"currency {currency!r}: a three-letter code such as EUR or CHF")


def billing_rule(connect_s: int, minimum_s: int, initial_s: int, increment_s: int) -> BillingRule:
    try:
        return BillingRule(connect_s=connect_s, minimum_s=minimum_s, initial_s=initial_s,
                           increment_s=increment_s)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


async def _check_account_currency(store: SqliteStore, currency: str, *, what: str) -> None:
    account = (await store.account_settings()).currency
    if account is not None and account != currency:
        raise CurrencyMismatch(f"{what} is in {currency}, but this database's account is kept in {account};"
                               " one account has one currency (use another database for another currency)")


async def _free_numbers(store: SqliteStore, numbers: Iterable[str]) -> None:
    for number in numbers:
        owner = await store.access_number_owner(number)
        if owner is not None:
            raise AlreadyExists(f"{number} is already an access number of project {owner}")


async def create_project(store: SqliteStore, *, name: str, numbers: list[str], service: str,
                         fallback: str | None = None, language: str = "de", region: str = "DE",
                         price_per_minute_cents: int = 0, currency: str = "EUR",
                         rule: BillingRule = PER_SECOND, ring_timeout_s: int = 30, warning_s: int = 60,
                         pin_length: int = 8, max_bound_numbers: int = 3, max_simultaneous_calls: int = 1,
                         card_validity_days: int | None = None, now_ms: int) -> Project:
    """Create a project; its currency becomes the account's if the account has none yet.

    Raises:
        InvalidInput, CurrencyMismatch, AlreadyExists (name or access number taken).
    """
    if not name or not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        raise InvalidInput(f"project name {name!r}: letters, digits, - and _ only")
    region, currency = region.upper(), currency.upper()
    check_project_values({
        "language": language, "region": region, "service": service, "fallback": fallback,
        "pin_length": pin_length, "ring_timeout_s": ring_timeout_s, "warning_s": warning_s,
        "max_bound_numbers": max_bound_numbers, "currency": currency,
        "max_simultaneous_calls": max_simultaneous_calls, "price_per_minute_cents": price_per_minute_cents,
        "card_validity_days": card_validity_days})
    if not numbers:
        raise InvalidInput("a project needs at least one access number (--number)")
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


async def update_project(store: SqliteStore, project: Project, *, values: Mapping[str, Any],
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
    return await store.update_project(project.id, changes=values, add_numbers=added, remove_numbers=removed)


async def project(store: SqliteStore, name: str) -> Project:
    found = await store.project_by_name(name)
    if found is None:
        raise NotFound(f"no project {name!r}")
    return found


# --- the operator's account ---------------------------------------------------
class AccountLevel(enum.StrEnum):
    OK = "ok"
    INFO = "info"          # owing more than the info limit: warn
    LOCKED = "locked"      # owing more than the lock limit: no purchases, no recharges


@dataclass(frozen=True)
class AccountState:
    currency: str | None
    owed_cents: int             # negative: the operator has paid in advance
    info_limit_cents: int
    lock_limit_cents: int
    suspend_calls: bool         # the operator's choice: when locked, new calls are refused

    @property
    def level(self) -> AccountLevel:
        if self.owed_cents > self.lock_limit_cents:
            return AccountLevel.LOCKED
        if self.owed_cents > self.info_limit_cents:
            return AccountLevel.INFO
        return AccountLevel.OK

    @property
    def locked(self) -> bool:
        return self.level is AccountLevel.LOCKED

    @property
    def calls_suspended(self) -> bool:
        return self.suspend_calls and self.locked

    def money(self, cents: int) -> str:
        return format_money(cents, self.currency or "")


async def account_state(store: SqliteStore) -> AccountState:
    """The account now: owed amount, limits, level. For the engine's log event and the CLI."""
    settings = await store.account_settings()
    return AccountState(currency=settings.currency, owed_cents=await store.account_owed_cents(),
                        info_limit_cents=settings.info_limit_cents,
                        lock_limit_cents=settings.lock_limit_cents, suspend_calls=settings.suspend_calls)


async def calls_suspended(store: SqliteStore) -> bool:
    """True when new calls must hear "service suspended": the account is locked and the
    operator chose ``ivr account limits --suspend-calls``."""
    return (await account_state(store)).calls_suspended


async def ensure_purchases_allowed(store: SqliteStore, project: Project) -> AccountState:
    """Raises CurrencyMismatch or AccountLocked before a card purchase or recharge."""
    await _check_account_currency(store, project.currency, what=f"project {project.name}")
    state = await account_state(store)
    if state.locked:
        raise AccountLocked(
            f"the account owes {state.money(state.owed_cents)}, more than its lock limit of"
            f" {state.money(state.lock_limit_cents)}: no new cards or recharges until a payment"
            " (ivr account pay AMOUNT)")
    return state


async def pay(store: SqliteStore, *, amount_cents: int, reference: str, by: str, now_ms: int) -> AccountState:
    """Record a payment in the account's currency. Raises InvalidInput."""
    if amount_cents <= 0:
        raise InvalidInput("a payment must be more than 0")
    currency = (await store.account_settings()).currency
    if currency is None:
        raise InvalidInput("the account has no currency yet: create a project first")
    await store.add_payment(amount_cents=amount_cents, currency=currency, reference=reference,
                            entered_by=by, now_ms=now_ms)
    return await account_state(store)


async def set_limits(store: SqliteStore, *, info_cents: int | None = None, lock_cents: int | None = None,
                     suspend_calls: bool | None = None) -> AccountState:
    """Change only the given limits. Raises InvalidInput (the info limit above the lock limit)."""
    current = await store.account_settings()
    info = current.info_limit_cents if info_cents is None else info_cents
    lock = current.lock_limit_cents if lock_cents is None else lock_cents
    if info > lock:
        raise InvalidInput(f"the info limit ({format_money(info, current.currency or '').strip()}) must not be"
                           f" above the lock limit ({format_money(lock, current.currency or '').strip()})")
    changes = {k: v for k, v in (("info_limit_cents", info_cents), ("lock_limit_cents", lock_cents),
                                 ("suspend_calls", suspend_calls)) if v is not None}
    await store.update_account_settings(changes)
    return await account_state(store)


@dataclass(frozen=True)
class StatementLine:
    line: AccountLine
    balance_cents: int      # owed after this line


@dataclass(frozen=True)
class Statement:
    currency: str | None
    opening_cents: int
    lines: list[StatementLine]

    @property
    def closing_cents(self) -> int:
        return self.lines[-1].balance_cents if self.lines else self.opening_cents


async def statement(store: SqliteStore, *, since_ms: int | None = None, until_ms: int | None = None) -> Statement:
    """The account's lines in a period with the running owed amount. Raises CurrencyMismatch
    when projects of several currencies were billed (a database from before the account)."""
    currency = (await store.account_settings()).currency
    others = sorted(c for c in await store.project_currencies() if c != currency)
    if others:
        raise CurrencyMismatch(f"projects priced in {', '.join(others)} were billed to an account kept in"
                               f" {currency}; one account has one currency")
    opening = await store.account_owed_cents(before_ms=since_ms) if since_ms is not None else 0
    balance, lines = opening, []
    for line in await store.account_lines(since_ms=since_ms, until_ms=until_ms):
        balance += line.amount_cents
        lines.append(StatementLine(line, balance))
    return Statement(currency=currency, opening_cents=opening, lines=lines)


# --- cards --------------------------------------------------------------------
@dataclass(frozen=True)
class NewCard:
    card: Card
    pin: str   # shown once, never stored in clear


@dataclass(frozen=True)
class Quote:
    project: str
    minutes: int
    count: int
    price_cents: int     # one card
    currency: str

    @property
    def seconds(self) -> int:
        return self.minutes * 60

    @property
    def total_cents(self) -> int:
        return self.price_cents * self.count


def check_minutes(minutes: int) -> int:
    if not 0 < minutes <= MAX_MINUTES:
        raise InvalidInput(f"minutes must be between 1 and {MAX_MINUTES}, not {minutes}")
    return minutes


def check_count(count: int) -> int:
    if not 0 < count <= MAX_BATCH:
        raise InvalidInput(f"count must be between 1 and {MAX_BATCH}, not {count}")
    return count


def check_note(note: str) -> str:
    note = " ".join(note.split())
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"the note has {len(note)} characters; at most {MAX_NOTE}")
    return note


def quote(project: Project, minutes: int, count: int = 1) -> Quote:
    """The price of ``count`` cards of ``minutes`` each, changing nothing. Raises InvalidInput."""
    seconds = check_minutes(minutes) * 60
    return Quote(project=project.name, minutes=minutes, count=check_count(count),
                 price_cents=price_cents(seconds, project.price_per_minute_cents), currency=project.currency)


async def _issue_card(store: SqliteStore, secret: bytes, *, project: Project, minutes: int, note: str,
                      now_ms: int) -> NewCard:
    seconds = minutes * 60
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


async def create_card(store: SqliteStore, secret: bytes, *, project: Project, minutes: int, note: str,
                      now_ms: int) -> NewCard:
    """Buy one card: create it and charge its price to the account.

    Raises:
        InvalidInput, CurrencyMismatch, AccountLocked.
    """
    check_minutes(minutes)
    note = check_note(note)
    await ensure_purchases_allowed(store, project)
    return await _issue_card(store, secret, project=project, minutes=minutes, note=note, now_ms=now_ms)


async def buy_cards(store: SqliteStore, secret: bytes, *, project: Project, minutes: int, note: str,
                    count: int, now_ms: int) -> AsyncIterator[NewCard]:
    """Buy a batch, yielding each card as it is created (so its PIN can be written at once).
    The account is checked once, before the first card. Raises as ``create_card``."""
    check_minutes(minutes)
    check_count(count)
    note = check_note(note)
    await ensure_purchases_allowed(store, project)
    for _ in range(count):
        yield await _issue_card(store, secret, project=project, minutes=minutes, note=note, now_ms=now_ms)


async def card(store: SqliteStore, card_id: str) -> Card:
    text = card_id.strip()
    if not text.isascii() or not text.isdigit():
        raise InvalidInput(f"card id {card_id!r} is not a number")
    return await store.card(int(text))


async def card_project(store: SqliteStore, card: Card) -> Project:
    found = await store.project_by_id(card.project_id)
    if found is None:  # pragma: no cover - a foreign key
        raise NotFound(f"card {card.id} has no project")
    return found


def check_card_status(status: str) -> CardStatus:
    try:
        return CardStatus(status.lower())
    except ValueError:
        raise InvalidInput(f"status {status!r}: one of {', '.join(s.value for s in CardStatus)}") from None


async def list_cards(store: SqliteStore, *, project: Project | None = None, status: CardStatus | None = None,
                     search: str | None = None, sort: str = "created", reverse: bool = False,
                     now_ms: int) -> list[Card]:
    """Cards filtered by project, status and text in the note, sorted by ``CARD_SORTS``:
    created (oldest first), remaining (least first), activated (never-activated last)."""
    if sort not in CARD_SORTS:
        raise InvalidInput(f"sort {sort!r}: one of {', '.join(CARD_SORTS)}")
    cards = await store.cards(project.id if project else None)
    if status is not None:
        cards = [c for c in cards if c.status(now_ms) is status]
    if search:
        needle = search.casefold()
        cards = [c for c in cards if needle in c.note.casefold()]
    keys: dict[str, Callable[[Card], tuple[int, ...]]] = {
        "created": lambda c: (c.created_ms, c.id),
        "remaining": lambda c: (c.balance_s, c.id),
        "activated": lambda c: (c.activated_ms is None, c.activated_ms or 0, c.id),
    }
    return sorted(cards, key=keys[sort], reverse=reverse)


@dataclass(frozen=True)
class Recharge:
    card: Card
    seconds: int
    price_cents: int
    currency: str


async def recharge(store: SqliteStore, *, card: Card, minutes: int, now_ms: int) -> Recharge:
    """Add minutes, charging their price to the account.

    Raises:
        InvalidInput, CardExpired (give it a new date first), CurrencyMismatch, AccountLocked.
    """
    seconds = check_minutes(minutes) * 60
    proj = await card_project(store, card)
    if card.status(now_ms) is CardStatus.EXPIRED:
        raise CardExpired(f"card {card.id} has expired; give it a new date first"
                          f" (ivr card expire {card.id} --on YYYY-MM-DD, or --never)")
    await ensure_purchases_allowed(store, proj)
    cents = price_cents(seconds, proj.price_per_minute_cents)
    updated = await store.recharge(card.id, seconds, cents, now_ms)
    return Recharge(card=updated, seconds=seconds, price_cents=cents, currency=proj.currency)


@dataclass(frozen=True)
class BindPlan:
    number: str                  # E.164
    moved_from: int | None       # the card the number is bound to now, if another one
    dropped: list[str]           # this card's oldest numbers that make room (max bound numbers)


async def plan_bind(store: SqliteStore, *, card: Card, number: str) -> BindPlan:
    """What binding ``number`` to the card would change. Raises InvalidInput, AlreadyExists."""
    proj = await card_project(store, card)
    e164 = normalise(number, proj.region)
    current = await store.card_for_caller(proj.id, e164)
    if current is not None and current.id == card.id:
        raise AlreadyExists(f"{e164} is already bound to card {card.id}")
    bound = [b.caller for b in await store.bindings(card.id)]
    excess = len(bound) + 1 - proj.max_bound_numbers
    return BindPlan(number=e164, moved_from=current.id if current else None,
                    dropped=bound[:excess] if excess > 0 else [])


async def bind(store: SqliteStore, *, card: Card, number: str, now_ms: int) -> str:
    """Bind a caller's number by hand (an operator binding activates the card). Returns it in E.164."""
    plan = await plan_bind(store, card=card, number=number)
    proj = await card_project(store, card)
    await store.bind(project_id=proj.id, caller=plan.number, card_id=card.id, now_ms=now_ms,
                     source="operator", max_bound=proj.max_bound_numbers)
    return plan.number


async def unbind(store: SqliteStore, *, card: Card, number: str) -> str:
    """Remove a number from the card; its next call asks for a PIN. Raises InvalidInput, NotFound."""
    proj = await card_project(store, card)
    e164 = normalise(number, proj.region)
    if e164 not in [b.caller for b in await store.bindings(card.id)]:
        raise NotFound(f"{e164} is not bound to card {card.id}")
    await store.unbind(proj.id, e164)
    return e164


async def reset_pin(store: SqliteStore, secret: bytes, *, card: Card) -> str:
    """Give the card a new PIN, unique in its project. Returns the PIN (shown once)."""
    proj = await card_project(store, card)
    for _ in range(20):
        pin = generate_pin(proj.pin_length)
        hashed = pin_hash(secret, proj.id, pin)
        if await store.card_by_pin_hash(proj.id, hashed) is not None:
            continue  # taken, or by chance the card's own PIN
        try:
            await store.set_pin_hash(card.id, hashed)
            return pin
        except AlreadyExists:
            continue
    raise InvalidInput("could not find a free PIN: raise the project's PIN length")


def check_expiry(expires_ms: int | None, now_ms: int, label: str = "that date") -> None:
    """Raises InvalidInput when ``expires_ms`` (None: never) is not in the future."""
    if expires_ms is not None and expires_ms <= now_ms:
        raise InvalidInput(f"{label} is in the past: the last day can be today at the earliest")


async def set_expiry(store: SqliteStore, *, card: Card, expires_ms: int | None, now_ms: int,
                     label: str = "that date") -> Card:
    """Set when the card expires (None: never). Raises InvalidInput for a moment in the past."""
    check_expiry(expires_ms, now_ms, label)
    return await store.set_expiry(card.id, expires_ms)


# --- blocked numbers ----------------------------------------------------------
def check_pattern(text: str) -> str:
    """A blocked-number pattern, cleaned (spaces, dashes gone; X as x) and checked: it must be
    well-formed, able to match a real number and not match every number.

    Raises:
        InvalidInput.
    """
    pattern = text.translate(_SEPARATORS).replace("X", "x")
    compile_pattern(pattern)
    body = pattern.removesuffix(".")
    international = body.startswith(("+", "00"))
    rest = body[1:] if body.startswith("+") else body.removeprefix("00")
    if international and rest.startswith("0"):
        raise InvalidInput(f"pattern {pattern!r} can never match: no country code starts with 0")
    if (international and len(rest) > 15) or len(body) > 17:
        raise InvalidInput(f"pattern {pattern!r} can never match: a phone number has at most 15 digits")
    fixed = rest if international else rest.removeprefix("0")
    if pattern.endswith(".") and not fixed[:1].isdigit():
        raise InvalidInput(f"pattern {pattern!r} would block every number; give the first digits"
                           " after the prefix, e.g. 0900. or +41900.")
    return pattern


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise InvalidInput(f"direction {direction!r}: inbound (callers) or outbound (destinations)")
    return direction


async def blacklist_add(store: SqliteStore, *, project: Project | None, pattern: str, direction: str,
                        reason: str, now_ms: int, added_by: str = "") -> BlockedNumber:
    """Block a number or number block in a project (None: in every project).
    Raises InvalidInput, AlreadyExists."""
    return await store.add_blocked(project_id=project.id if project else None, pattern=check_pattern(pattern),
                                   direction=check_direction(direction), reason=reason.strip(),
                                   added_by=added_by, now_ms=now_ms)


async def blocked_entry(store: SqliteStore, *, project: Project | None, pattern: str,
                        direction: str) -> BlockedNumber:
    """The entry for exactly this scope, pattern and direction. Raises InvalidInput, NotFound."""
    clean = pattern.translate(_SEPARATORS).replace("X", "x")
    compile_pattern(clean)
    check_direction(direction)
    entries = await blocked_list(store, project=project, only_global=project is None,
                                 include_global=False)
    for entry in entries:
        if entry.pattern == clean and entry.direction == direction:
            return entry
    raise NotFound(f"{clean} ({direction}) is not blocked in {project.name if project else 'the global list'}")


async def blacklist_remove(store: SqliteStore, *, project: Project | None, pattern: str,
                           direction: str) -> BlockedNumber:
    entry = await blocked_entry(store, project=project, pattern=pattern, direction=direction)
    await store.blacklist_remove(project_id=entry.project_id, pattern=entry.pattern, direction=entry.direction)
    return entry


async def blocked_list(store: SqliteStore, *, project: Project | None = None, only_global: bool = False,
                       include_global: bool = True, direction: str | None = None) -> list[BlockedNumber]:
    return await store.blocked(project_id=project.id if project else None, only_global=only_global,
                               include_global=include_global,
                               direction=check_direction(direction) if direction else None)


@dataclass(frozen=True)
class BlockedRow:
    line: int
    pattern: str
    direction: str
    reason: str
    added_by: str


BLACKLIST_CSV_COLUMNS = ("pattern", "direction", "reason", "added_by", "added_at", "scope")


def parse_blacklist_csv(text: str, *, source: str, default_by: str) -> list[BlockedRow]:
    """Read and check every row of a blocked-numbers CSV (``pattern`` column required;
    ``direction``, ``reason``, ``added_by`` optional; ``added_at``, ``scope`` ignored; comma
    or semicolon separated). Raises InvalidInput naming the file and line of the first bad row."""
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [(h or "").strip().lower() for h in reader.fieldnames or []]
    if "pattern" not in header:
        raise InvalidInput(f"{source} line 1: the header needs a 'pattern' column"
                           f" (columns: {', '.join(BLACKLIST_CSV_COLUMNS)})")
    unknown = [h for h in header if h not in BLACKLIST_CSV_COLUMNS]
    if unknown:
        raise InvalidInput(f"{source} line 1: unknown column {unknown[0]!r}"
                           f" (columns: {', '.join(BLACKLIST_CSV_COLUMNS)})")
    reader.fieldnames = header
    rows: list[BlockedRow] = []
    seen: dict[tuple[str, str], int] = {}
    for raw in reader:
        line = reader.line_num
        if None in raw:
            raise InvalidInput(f"{source} line {line}: more fields than columns")
        values = {k: (v or "").strip() for k, v in raw.items()}
        if not any(values.values()):
            continue
        try:
            row = BlockedRow(line=line, pattern=check_pattern(values.get("pattern", "")),
                             direction=check_direction(values.get("direction") or "inbound"),
                             reason=values.get("reason", ""), added_by=values.get("added_by") or default_by)
        except InvalidInput as exc:
            raise InvalidInput(f"{source} line {line}: {exc}") from None
        key = (row.pattern, row.direction)
        if key in seen:
            raise InvalidInput(f"{source} line {line}: {row.pattern} ({row.direction}) is already on line"
                               f" {seen[key]}")
        seen[key] = line
        rows.append(row)
    if not rows:
        raise InvalidInput(f"{source}: no entries")
    return rows


@dataclass(frozen=True)
class ImportResult:
    added: int
    already_there: int
    removed: int


async def import_blacklist(store: SqliteStore, *, project: Project | None, rows: Sequence[BlockedRow],
                           replace: bool, now_ms: int) -> ImportResult:
    """Add checked rows to a scope in one transaction (with ``replace``: instead of its entries)."""
    added, kept, removed = await store.import_blocked(
        project_id=project.id if project else None,
        entries=[(r.pattern, r.direction, r.reason, r.added_by) for r in rows], replace=replace, now_ms=now_ms)
    return ImportResult(added=added, already_there=kept, removed=removed)


# --- CDRs and statistics --------------------------------------------------------
def check_outcome(text: str) -> str:
    """A call type as the CDRs write it (``answered``, ``no-answer`` … in any case)."""
    value = text.strip().upper().replace("-", "_")
    if value not in {o.value for o in Outcome}:
        raise InvalidInput(f"outcome {text!r}: one of {', '.join(o.value.lower() for o in Outcome)}")
    return value


@dataclass(frozen=True)
class CdrFilter:
    since_ms: int | None = None
    until_ms: int | None = None
    project: Project | None = None
    card_id: int | None = None
    number: str | None = None          # a number or x pattern: the caller's or the access number
    outcomes: tuple[str, ...] = ()


def _number_matcher(text: str) -> Callable[[Cdr, str], bool]:
    pattern = text.translate(_SEPARATORS).replace("X", "x")
    compile_pattern(pattern)

    def match(cdr: Cdr, region: str) -> bool:
        return matches(pattern, parse_caller(cdr.caller_raw, region)) or \
            matches(pattern, parse_caller(cdr.dialled, region))
    return match


async def find_cdrs(store: SqliteStore, flt: CdrFilter, *, last: int | None = None) -> list[Cdr]:
    """CDRs in start order, filtered; with ``last`` the latest that many. Raises InvalidInput."""
    if flt.since_ms is not None and flt.until_ms is not None and flt.since_ms >= flt.until_ms:
        raise InvalidInput("the period is empty: --from must be before --to")
    match = _number_matcher(flt.number) if flt.number else None
    cdrs = await store.find_cdrs(since_ms=flt.since_ms, until_ms=flt.until_ms,
                                 project_id=flt.project.id if flt.project else None, card_id=flt.card_id,
                                 outcomes=flt.outcomes, last=None if match else last)
    if match is not None:
        regions = {p.id: p.region for p in await store.projects()}
        cdrs = [c for c in cdrs if match(c, regions.get(c.project_id or 0, "DE"))]
        if last is not None:
            cdrs = cdrs[-last:] if last else []
    return cdrs


@dataclass
class ReportRow:
    key: str
    calls: int = 0
    answered: int = 0
    talk_s: int = 0
    debited_s: int = 0
    revenue_cents: int = 0
    _debited_by_project: dict[int, int] = field(default_factory=dict, repr=False)

    def add(self, cdr: Cdr) -> None:
        self.calls += 1
        self.answered += cdr.outcome == Outcome.ANSWERED
        self.talk_s += cdr.talk_s
        self.debited_s += cdr.debited_s
        if cdr.project_id is not None:
            self._debited_by_project[cdr.project_id] = self._debited_by_project.get(cdr.project_id, 0) \
                + cdr.debited_s

    def price(self, projects: Mapping[int, Project]) -> None:
        self.revenue_cents = sum(price_cents(s, projects[pid].price_per_minute_cents)
                                 for pid, s in self._debited_by_project.items())


@dataclass(frozen=True)
class Report:
    by: str
    currency: str | None
    rows: list[ReportRow]
    totals: ReportRow


def month_of(ms: int, tz: tzinfo | None = None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m")


def _report_key(by: str, cdr: Cdr, projects: Mapping[int, Project], tz: tzinfo | None) -> str:
    project_ = projects.get(cdr.project_id) if cdr.project_id is not None else None
    region = project_.region if project_ else "DE"
    if by == "month":
        return month_of(cdr.start_ms, tz)
    if by == "number":
        return cdr.caller_e164 or parse_caller(cdr.caller_raw, region).e164 or "anonymous"
    if by == "access":
        return parse_caller(cdr.dialled, region).e164 or cdr.dialled
    if by == "card":
        return str(cdr.card_id) if cdr.card_id is not None else "-"
    if by == "project":
        return project_.name if project_ else "-"
    return cdr.outcome


def _report_order(by: str, row: ReportRow) -> tuple[Any, ...]:
    if by == "month":
        return (row.key,)
    if by == "card":
        return (not row.key.isdigit(), int(row.key) if row.key.isdigit() else 0)
    return (-row.debited_s, -row.calls, row.key)


async def report(store: SqliteStore, cdrs: Sequence[Cdr], *, by: str, tz: tzinfo | None = None) -> Report:
    """Calls, answered calls, talk and debited seconds and revenue per group; revenue is the
    group's debited seconds priced at each project's price per minute (rounded up to the
    cent, like a card's price). Raises InvalidInput, CurrencyMismatch."""
    if by not in REPORT_BY:
        raise InvalidInput(f"report by {by!r}: one of {', '.join(REPORT_BY)}")
    projects = {p.id: p for p in await store.projects()}
    currencies = sorted({projects[c.project_id].currency for c in cdrs if c.project_id in projects})
    if len(currencies) > 1:
        raise CurrencyMismatch(f"the calls are priced in {' and '.join(currencies)}: report one project"
                               " at a time (--project)")
    groups: dict[str, ReportRow] = {}
    totals = ReportRow(key="total")
    for cdr in cdrs:
        key = _report_key(by, cdr, projects, tz)
        groups.setdefault(key, ReportRow(key=key)).add(cdr)
        totals.add(cdr)
    for row in [*groups.values(), totals]:
        row.price(projects)
    currency = currencies[0] if currencies else (await store.account_settings()).currency
    rows = sorted(groups.values(), key=lambda r: _report_order(by, r))
    return Report(by=by, currency=currency, rows=rows, totals=totals)


# --- calendar: operator dates are local dates -----------------------------------
def parse_date(text: str) -> date:
    """``2026-11-23`` or ``23.11.2026``. Raises InvalidInput."""
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise InvalidInput(f"not a date: {text!r} (YYYY-MM-DD or DD.MM.YYYY)")


def day_start_ms(day: date, tz: tzinfo | None = None) -> int:
    """The first millisecond of a local day (``tz`` None: this machine's time zone)."""
    start = datetime.combine(day, time()).replace(tzinfo=tz) if tz else datetime.combine(day, time()).astimezone()
    return int(start.timestamp() * 1000)


def period_ms(since: date | None, until: date | None, tz: tzinfo | None = None) -> tuple[int | None, int | None]:
    """``[since, until]`` as whole local days (``until`` included) in milliseconds."""
    start = day_start_ms(since, tz) if since else None
    end = day_start_ms(until + timedelta(days=1), tz) if until else None
    return start, end


def month_period_ms(text: str, tz: tzinfo | None = None) -> tuple[int, int]:
    """``YYYY-MM`` as ``[first day, first day of the next month)`` in milliseconds. Raises InvalidInput."""
    try:
        first = datetime.strptime(text.strip(), "%Y-%m").date()
    except ValueError:
        raise InvalidInput(f"not a month: {text!r} (YYYY-MM)") from None
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return day_start_ms(first, tz), day_start_ms(following, tz)
