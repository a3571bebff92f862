"""Cards: quotes, purchases and batches, recharges, bindings, PINs, expiry."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from rating.billing import price_cents
from rating.errors import AlreadyExists, CardExpired, InvalidInput, NotFound
from rating.models import Card, CardStatus, Project
from rating.pins import pin_hash, pin_sequence
from rating.store.base import OperatorStore

from ._common import CARD_SORTS, MAX_BATCH, MAX_MINUTES, MAX_NOTE, AccountLocked
from .account import ensure_purchases_allowed
from .projects import normalise


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


async def check_batch(store: OperatorStore, project: Project, *, minutes: int, count: int) -> Quote:
    """Everything a purchase of ``count`` cards needs, checked before anything is bought:
    the account is not locked, a batch (``count`` > 1) would not owe more than the lock
    limit after it (one card keeps the lock limit's rule: refused once locked), and the
    project's PINs have room for every card. Checked outside the purchase's transaction:
    two operators buying at once can pass the lock limit by one batch. Returns the
    batch's quote. Raises InvalidInput, CurrencyMismatch, AccountLocked."""
    q = quote(project, minutes, count)
    state = await ensure_purchases_allowed(store, project)
    after = state.owed_cents + q.total_cents
    if count > 1 and after > state.lock_limit_cents:
        fit = max(0, state.lock_limit_cents - state.owed_cents) // q.price_cents if q.price_cents else count
        raise AccountLocked(
            f"{count} cards cost {state.money(q.total_cents)}: the account owes {state.money(state.owed_cents)}"
            f" and would owe {state.money(after)}, more than its lock limit of {state.money(state.lock_limit_cents)};"
            f" at most {fit} such cards fit (or pay first: ivr account pay AMOUNT)")
    space = 10 ** project.pin_length
    taken = await store.card_count(project.id)
    if count > space - taken:
        raise InvalidInput(
            f"project {project.name} has {project.pin_length}-digit PINs ({space:,} in all) and {taken:,} cards:"
            f" at most {space - taken:,} more fit, not {count:,} (a project with longer PINs holds more)")
    return q


async def _buy(store: OperatorStore, secret: bytes, *, project: Project, minutes: int, note: str, count: int,
               now_ms: int, before_commit: Callable[[list[NewCard]], None] | None) -> list[NewCard]:
    """One transaction for the whole purchase; the PINs drawn as ``pin_sequence`` gives them."""
    q = await check_batch(store, project, minutes=minutes, count=count)
    expires = now_ms + project.card_validity_days * 86_400_000 if project.card_validity_days else None
    pins: dict[str, str] = {}  # hash -> PIN, of those drawn (at most the cards bought and those there)

    def hashes() -> Iterator[str]:
        for pin in pin_sequence(project.pin_length):
            hashed = pin_hash(secret, project.id, pin)
            pins[hashed] = pin
            yield hashed

    def named(made: Sequence[tuple[Card, str]]) -> list[NewCard]:
        return [NewCard(card=c, pin=pins[h]) for c, h in made]

    made = await store.create_cards(
        project_id=project.id, note=note, count=count, pin_hashes=hashes(), seconds=q.seconds,
        price_cents=q.price_cents, now_ms=now_ms, expires_ms=expires,
        before_commit=(lambda made: before_commit(named(made))) if before_commit is not None else None)
    return named(made)


async def create_card(store: OperatorStore, secret: bytes, *, project: Project, minutes: int, note: str,
                      now_ms: int) -> NewCard:
    """Buy one card: create it and charge its price to the account.

    Raises:
        InvalidInput, CurrencyMismatch, AccountLocked.
    """
    check_minutes(minutes)
    [new] = await _buy(store, secret, project=project, minutes=minutes, note=check_note(note), count=1,
                       now_ms=now_ms, before_commit=None)
    return new


async def buy_cards(store: OperatorStore, secret: bytes, *, project: Project, minutes: int, note: str,
                    count: int, now_ms: int,
                    before_commit: Callable[[list[NewCard]], None] | None = None) -> list[NewCard]:
    """Buy a batch, all or nothing: checked whole first (``check_batch``: lock limit, PIN
    room), then every card and its charge in one transaction. ``before_commit`` gets the
    cards with their PINs before that transaction commits (write the PIN file there: if
    it raises, nothing is bought). Raises as ``create_card``, and AlreadyExists when the
    PINs ran out under a concurrent purchase (nothing bought)."""
    check_minutes(minutes)
    check_count(count)
    return await _buy(store, secret, project=project, minutes=minutes, note=check_note(note), count=count,
                      now_ms=now_ms, before_commit=before_commit)


async def card(store: OperatorStore, card_id: str) -> Card:
    text = card_id.strip()
    if not text.isascii() or not text.isdigit():
        raise InvalidInput(f"card id {card_id!r} is not a number")
    if len(text.lstrip("0")) > 18:  # past int64: no such card (the store would overflow)
        raise NotFound(f"no card {text}")
    return await store.card(int(text))


async def card_project(store: OperatorStore, card: Card) -> Project:
    found = await store.project_by_id(card.project_id)
    if found is None:  # pragma: no cover - a foreign key
        raise NotFound(f"card {card.id} has no project")
    return found


def check_card_status(status: str) -> CardStatus:
    try:
        return CardStatus(status.lower())
    except ValueError:
        raise InvalidInput(f"status {status!r}: one of {', '.join(s.value for s in CardStatus)}") from None


async def list_cards(store: OperatorStore, *, project: Project | None = None, status: CardStatus | None = None,
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


async def recharge(store: OperatorStore, *, card: Card, minutes: int, now_ms: int) -> Recharge:
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


async def plan_bind(store: OperatorStore, *, card: Card, number: str) -> BindPlan:
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


async def bind(store: OperatorStore, *, card: Card, number: str, now_ms: int, actor: str = "operator") -> str:
    """Bind a caller's number by hand (an operator binding activates the card; above the
    card's limit the oldest number goes, as ``plan_bind`` showed). Returns it in E.164."""
    plan = await plan_bind(store, card=card, number=number)
    proj = await card_project(store, card)
    await store.bind(project_id=proj.id, caller=plan.number, card_id=card.id, now_ms=now_ms,
                     source="operator", max_bound=proj.max_bound_numbers, evict=True, actor=actor)
    return plan.number


async def unbind(store: OperatorStore, *, card: Card, number: str, actor: str = "operator",
                 now_ms: int | None = None) -> str:
    """Remove a number from the card; its next call asks for a PIN. Raises InvalidInput, NotFound."""
    proj = await card_project(store, card)
    e164 = normalise(number, proj.region)
    if e164 not in [b.caller for b in await store.bindings(card.id)]:
        raise NotFound(f"{e164} is not bound to card {card.id}")
    await store.unbind(proj.id, e164, actor=actor, now_ms=now_ms)
    return e164


async def reset_pin(store: OperatorStore, secret: bytes, *, card: Card) -> str:
    """Give the card a new PIN, unique in its project. Returns the PIN (shown once)."""
    proj = await card_project(store, card)
    space = 10 ** proj.pin_length
    taken = await store.card_count(proj.id)   # each card holds one PIN, this card's own included
    if taken >= space:
        raise InvalidInput(f"project {proj.name} has {proj.pin_length}-digit PINs ({space:,} in all) and"
                           f" {taken:,} cards: no PIN is free (a project with longer PINs holds more)")
    # Every PIN once, in random order: at most `taken` of them are in use, so a free one
    # comes within taken + 1 draws (more only if cards are bought meanwhile).
    for pin in itertools.islice(pin_sequence(proj.pin_length), taken + 1):
        hashed = pin_hash(secret, proj.id, pin)
        if await store.card_by_pin_hash(proj.id, hashed) is not None:
            continue  # taken, or the card's own PIN
        try:
            await store.set_pin_hash(card.id, hashed)
            return pin
        except AlreadyExists:
            continue
    raise InvalidInput(f"could not find a free PIN in project {proj.name}: cards were bought meanwhile; try again")


def check_expiry(expires_ms: int | None, now_ms: int, label: str = "that date") -> None:
    """Raises InvalidInput when ``expires_ms`` (None: never) is not in the future."""
    if expires_ms is not None and expires_ms <= now_ms:
        raise InvalidInput(f"{label} is in the past: the last day can be today at the earliest")


async def set_expiry(store: OperatorStore, *, card: Card, expires_ms: int | None, now_ms: int,
                     label: str = "that date") -> Card:
    """Set when the card expires (None: never). Raises InvalidInput for a moment in the past."""
    check_expiry(expires_ms, now_ms, label)
    return await store.set_expiry(card.id, expires_ms)
