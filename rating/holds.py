"""The decisions behind a hold, as pure functions every store backend calls.

A backend reads the card, asks ``grant_hold`` what to hold (or which refusal to
raise), writes it with one conditional update (the guard: no overdraft whatever
the concurrency), and on settlement debits ``settlement_debit``. Holds of crashed
engines go stale at ``hold_expiry_ms`` and are released by the next reservation
on the card (``is_stale``). No I/O here: the same rules for SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from .billing import BillingRule
from .errors import CardBlocked, CardExpired, CardInUse, CardUnusable, InsufficientBalance
from .models import Card, CardStatus

__all__ = ["RESERVATION_GRACE_MS", "HoldPlan", "card_refusal", "grant_hold", "hold_expiry_ms", "is_stale",
           "settlement_debit"]

# An open reservation older than this past its call's longest possible end is
# released by the next reservation on the card: it belongs to a crashed engine.
RESERVATION_GRACE_MS = 300_000


@dataclass(frozen=True)
class HoldPlan:
    """What to hold for one call: ``seconds`` of card time for at most ``max_talk_s`` of talk."""

    seconds: int
    max_talk_s: int
    available_before_s: int
    expires_ms: int


def card_refusal(card: Card, now_ms: int) -> CardUnusable | None:
    """Why the card cannot take a call now (blocked, expired, empty), or None.
    The one usability rule: ``Card.status`` and every backend's reservation use it."""
    status = card.status(now_ms)
    if status is CardStatus.BLOCKED:
        return CardBlocked(f"card {card.id} is blocked")
    if status is CardStatus.EXPIRED:
        return CardExpired(f"card {card.id} has expired")
    return None


def hold_expiry_ms(now_ms: int, max_talk_s: int, hold_s: int) -> int:
    """When a hold granted at ``now_ms`` goes stale: past the call's longest possible end."""
    return now_ms + (max_talk_s + hold_s) * 1000 + RESERVATION_GRACE_MS


def is_stale(expires_ms: int, now_ms: int) -> bool:
    return expires_ms < now_ms


def grant_hold(card: Card, *, rule: BillingRule, max_calls: int, hold_s: int, now_ms: int) -> HoldPlan:
    """The hold for one more call on ``card`` (its stale holds already released).

    The free time (balance minus other calls' holds) is shared among the call slots
    still free, so a second simultaneous call cannot spend the first's.

    Raises:
        CardBlocked, CardExpired, CardInUse, InsufficientBalance.
    """
    refusal = card_refusal(card, now_ms)
    if refusal is not None:
        raise refusal
    if card.active_calls >= max_calls:
        raise CardInUse(f"card {card.id} is in {card.active_calls} call(s)")
    share = card.available_s // (max_calls - card.active_calls)
    max_talk = rule.max_talk(share)
    if max_talk <= 0:
        raise InsufficientBalance(f"card {card.id} has {card.available_s} s left")
    return HoldPlan(seconds=rule.debit(max_talk), max_talk_s=max_talk, available_before_s=card.available_s,
                    expires_ms=hold_expiry_ms(now_ms, max_talk, hold_s))


def settlement_debit(reserved_s: int, debit_s: int) -> int:
    """What a settlement really debits: the call's cost, never below 0 nor above the hold."""
    return max(0, min(debit_s, reserved_s))
