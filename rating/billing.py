"""Pure rating arithmetic: integers only (seconds of card time, cents of money).

A project's billing rule turns a call's talk seconds into the seconds debited
from a card:

    debit(0)  = 0                                    (not answered, nothing billed)
    debit(t)  = connect + max(minimum, rounded(t))   for t >= 1
    rounded(t) = initial                             if t <= initial
               = initial + ceil((t - initial) / increment) * increment   otherwise

``max_talk(b)`` is the longest talk whose debit fits in ``b`` seconds, so
``debit(max_talk(b)) <= b < debit(max_talk(b) + increment)`` (property-tested).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["PER_SECOND", "BillingRule", "parse_money", "price_cents", "talk_seconds_from_ms"]


@dataclass(frozen=True)
class BillingRule:
    connect_s: int = 0      # charged once per answered call
    minimum_s: int = 0      # an answered call costs at least this (before connect)
    initial_s: int = 1      # the first block
    increment_s: int = 1    # every further block

    def __post_init__(self) -> None:
        if self.connect_s < 0 or self.minimum_s < 0:
            raise ValueError("connect charge and minimum must be >= 0 seconds")
        if self.initial_s < 1 or self.increment_s < 1:
            raise ValueError("initial block and increment must be >= 1 second")

    def debit(self, talk_s: int) -> int:
        """Seconds to debit for ``talk_s`` seconds of talk (0 for an unanswered call)."""
        if talk_s < 0:
            raise ValueError("talk time cannot be negative")
        if talk_s == 0:
            return 0
        if talk_s <= self.initial_s:
            rounded = self.initial_s
        else:
            blocks = -(-(talk_s - self.initial_s) // self.increment_s)
            rounded = self.initial_s + blocks * self.increment_s
        return self.connect_s + max(self.minimum_s, rounded)

    def max_talk(self, available_s: int) -> int:
        """The longest talk time whose debit fits in ``available_s`` (0 if not even 1 s)."""
        if available_s < self.debit(1):
            return 0
        room = available_s - self.connect_s
        return self.initial_s + ((room - self.initial_s) // self.increment_s) * self.increment_s


PER_SECOND = BillingRule()


def talk_seconds_from_ms(talk_ms: int, limit_s: int) -> int:
    """Billable whole seconds: every started second counts, but never beyond the limit
    Asterisk enforced (``L()`` cuts at ``limit_s``; its own jitter of a few ms is not
    the caller's talk)."""
    if talk_ms <= 0:
        return 0
    return min(-(-talk_ms // 1000), limit_s)


def price_cents(seconds: int, cents_per_minute: int) -> int:
    """Price of ``seconds`` of card time, rounded up to the cent."""
    return -(-seconds * cents_per_minute // 60)


# One unambiguous syntax: ASCII digits, an optional point and the decimals. No
# exponent (1e9), no thousands separators (1,500 or 1'500), no other scripts' digits
# (Decimal() takes a fullwidth ５ as 5): a mistyped payment must be refused, not read.
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]+))?", re.ASCII)
MAX_AMOUNT_DIGITS = 9  # 999,999,999.99: far above any card or payment, far below int64 cents


def parse_money(text: str) -> int:
    """``"0.50"`` -> 50 cents, exactly (Decimal, never float).

    Raises:
        ValueError: not a non-negative amount with at most two decimals.
    """
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an amount: {text!r} (digits with at most two decimals after a point, e.g. 250.00)")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > 2:
        raise ValueError(f"amount has more than two decimals: {text!r}")
    if len(whole.lstrip("0")) > MAX_AMOUNT_DIGITS:
        raise ValueError(f"amount too large: {text!r} (at most {MAX_AMOUNT_DIGITS} digits before the point)")
    return int(Decimal(f"{whole}.{fraction or '0'}") * 100)


# ISO 4217 currencies whose minor unit is not the hundredth. Money is kept in hundredths
# (cents) everywhere and typed with at most two decimals, so these would be read and
# shown wrong (JPY has no decimals, KWD three): a project is refused them, never misbilled.
DECIMALS_NOT_TWO: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
    "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3, "CLF": 4, "UYW": 4,
}


def format_money(cents: int, currency: str) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d} {currency}"
