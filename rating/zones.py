"""Destination zones and their surcharge factors: integers only.

The seed ("Telefonfaktoren") raises the rate by 0.2 for calls within Germany and by
0.3 within the EU once the included minutes are used. Here a project sets a factor
per zone in per-mille (1000 = the card's normal rate, 1200 = +0.2, 1300 = +0.3) and
optionally a quota of card seconds per card and calendar month charged at 1000.

A call's cost in card seconds:

    base       = rule.debit(talk)                       (the billing rule, factor 1)
    from_quota = min(base, quota_left)
    charged    = from_quota + ceil((base - from_quota) * factor / 1000)

``max_talk(rule, budget, factor, quota_left)`` is the longest talk whose charge fits
in ``budget``: ``charged(max_talk(b)) <= b`` and it never decreases in ``b``
(property-tested in tests/rating/test_zones.py). The surcharge is rounded up to the
second once per call, never per block, so a factor of 1000 changes nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .billing import BillingRule
from .errors import InvalidInput

__all__ = ["EU", "EUROPE_OTHER", "FACTOR_UNIT", "RATED_ZONES", "QuotaPeriod", "Zone", "ZoneTariff",
           "budget_base", "charge", "classify", "max_talk", "month_of", "parse_factor"]

FACTOR_UNIT = 1000          # per-mille: 1000 is the card's normal rate
FACTOR_MAX = 100_000        # a hundred times the rate: anything above is a typo


class Zone(enum.StrEnum):
    INTERNAL = "internal"                # a dial string (the operator's own PBX): never surcharged
    NATIONAL = "national"                # the project's country, not mobile
    NATIONAL_MOBILE = "national_mobile"
    EU = "eu"                            # another EU member state
    EUROPE = "europe"                    # the rest of Europe (CH for a German project, GB, NO, …)
    WORLD = "world"


#: The zones a factor can be set for (INTERNAL is always 1000).
RATED_ZONES = (Zone.NATIONAL, Zone.NATIONAL_MOBILE, Zone.EU, Zone.EUROPE, Zone.WORLD)

# The 27 member states (2026) and their regions phonenumbers names apart (Åland).
EU = frozenset({"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
                "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "AX"})
# Europe outside the EU: EFTA, the UK and its crown dependencies, the micro-states, the Balkans,
# the eastern neighbours, Turkey.
EUROPE_OTHER = frozenset({"CH", "LI", "NO", "IS", "GB", "GG", "JE", "IM", "GI", "FO", "AD", "MC", "SM", "VA",
                          "AL", "BA", "ME", "MK", "RS", "XK", "MD", "UA", "BY", "RU", "TR"})


def classify(country: str, *, mobile: bool, home: str) -> Zone:
    """The zone of a number in ``country`` (ISO) for a project in ``home``."""
    if country == home:
        return Zone.NATIONAL_MOBILE if mobile else Zone.NATIONAL
    if country in EU:
        return Zone.EU
    if country in EUROPE_OTHER:
        return Zone.EUROPE
    return Zone.WORLD


def parse_factor(text: str) -> int:
    """``"1200"`` (per-mille) or ``"1.2"`` / ``"1,2"`` (a multiplier) -> 1200.

    Raises:
        InvalidInput: not a factor between 1 and 100000 per-mille.
    """
    raw = text.strip().replace(",", ".")
    try:
        if "." in raw:
            whole, _, frac = raw.partition(".")
            if not (whole.isdigit() and frac.isdigit() and len(frac) <= 3):
                raise ValueError(raw)
            value = int(whole) * FACTOR_UNIT + int(frac.ljust(3, "0"))
        else:
            value = int(raw)
    except ValueError:
        raise InvalidInput(f"not a factor: {text!r} (per-mille like 1200, or a multiplier like 1.2)") from None
    if not 1 <= value <= FACTOR_MAX:
        raise InvalidInput(f"factor {text!r} out of range: 1 to {FACTOR_MAX} per-mille (1000 = no surcharge)")
    return value


@dataclass(frozen=True)
class ZoneTariff:
    """A project's factors (per-mille) and its included quota (card seconds per card per month)."""

    national: int = FACTOR_UNIT
    national_mobile: int = FACTOR_UNIT
    eu: int = FACTOR_UNIT
    europe: int = FACTOR_UNIT
    world: int = FACTOR_UNIT
    quota_s: int = 0

    def __post_init__(self) -> None:
        for zone in RATED_ZONES:
            value = self.factor(zone)
            if not 1 <= value <= FACTOR_MAX:
                raise ValueError(f"factor for {zone}: {value} out of 1..{FACTOR_MAX}")
        if self.quota_s < 0:
            raise ValueError("the included quota cannot be negative")

    def factor(self, zone: Zone) -> int:
        if zone is Zone.INTERNAL:
            return FACTOR_UNIT
        value: int = getattr(self, zone.value)
        return value

    def quota_for(self, zone: Zone) -> int:
        """The quota applies to the surcharged zones only; an internal leg costs 1000 anyway."""
        return 0 if zone is Zone.INTERNAL else self.quota_s


def charge(base_s: int, factor_pm: int, quota_left_s: int) -> tuple[int, int]:
    """(card seconds to debit, quota seconds used) for a call whose rule debit is ``base_s``."""
    if base_s < 0 or quota_left_s < 0 or factor_pm < 1:
        raise ValueError("base and quota must be >= 0, the factor >= 1")
    from_quota = min(base_s, quota_left_s)
    surcharged = -(-(base_s - from_quota) * factor_pm // FACTOR_UNIT)
    return from_quota + surcharged, from_quota


def budget_base(budget_s: int, factor_pm: int, quota_left_s: int) -> int:
    """The largest ``base`` whose ``charge`` fits in ``budget_s``."""
    if budget_s <= 0:
        return 0
    if budget_s <= quota_left_s:
        return budget_s
    return quota_left_s + (budget_s - quota_left_s) * FACTOR_UNIT // factor_pm


def max_talk(rule: BillingRule, budget_s: int, factor_pm: int, quota_left_s: int) -> int:
    """The longest talk time whose charge under ``factor_pm`` fits in ``budget_s`` card seconds."""
    return rule.max_talk(budget_base(budget_s, factor_pm, quota_left_s))


@dataclass(frozen=True)
class QuotaPeriod:
    """A card's included quota for one calendar month: ``limit_s`` card seconds at factor 1000."""

    month: str        # "2026-12", in the project's time zone
    limit_s: int


def month_of(now_ms: int, timezone: str) -> str:
    """The calendar month (``2026-12``) of a moment in the project's time zone: the quota's period."""
    return datetime.fromtimestamp(now_ms // 1000, UTC).astimezone(ZoneInfo(timezone)).strftime("%Y-%m")
