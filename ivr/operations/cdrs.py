"""CDR lists and reports (per month, number, card, outcome …) and the operators' local dates."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from rating.billing import price_cents
from rating.errors import InvalidInput
from rating.models import Cdr, Project
from rating.numbers import compile_pattern, matches, parse_caller
from rating.store.base import OperatorStore

from ..outcome import Outcome
from ._common import _SEPARATORS, CALL_TYPES, REPORT_BY, ZONES, CurrencyMismatch


# --- CDRs and statistics --------------------------------------------------------
def check_outcome(text: str) -> str:
    """A call type as the CDRs write it (``answered``, ``no-answer`` … in any case)."""
    value = text.strip().upper().replace("-", "_")
    if value not in {o.value for o in Outcome}:
        raise InvalidInput(f"outcome {text!r}: one of {', '.join(o.value.lower() for o in Outcome)}")
    return value


def check_call_type(text: str) -> str:
    value = text.strip().lower()
    if value not in CALL_TYPES:
        raise InvalidInput(f"call type {text!r}: one of {', '.join(CALL_TYPES)}")
    return value


def check_zone(text: str) -> str:
    value = text.strip().lower().replace("-", "_")
    if value not in ZONES:
        raise InvalidInput(f"zone {text!r}: one of {', '.join(ZONES)}")
    return value


@dataclass(frozen=True)
class CdrFilter:
    since_ms: int | None = None
    until_ms: int | None = None
    project: Project | None = None
    card_id: int | None = None
    number: str | None = None          # a number or x pattern: the caller's or the access number
    outcomes: tuple[str, ...] = ()
    call_types: tuple[str, ...] = ()   # service, forwarded, fallback, closed, refused, blocked
    zones: tuple[str, ...] = ()        # internal, national, national_mobile, eu, europe, world


def _number_matcher(text: str) -> Callable[[Cdr, str], bool]:
    pattern = text.translate(_SEPARATORS).replace("X", "x")
    compile_pattern(pattern)

    def match(cdr: Cdr, region: str) -> bool:
        return matches(pattern, parse_caller(cdr.caller_raw, region)) or \
            matches(pattern, parse_caller(cdr.dialled, region))
    return match


async def find_cdrs(store: OperatorStore, flt: CdrFilter, *, last: int | None = None) -> list[Cdr]:
    """CDRs in start order, filtered; with ``last`` the latest that many. Raises InvalidInput."""
    if flt.since_ms is not None and flt.until_ms is not None and flt.since_ms >= flt.until_ms:
        raise InvalidInput("the period is empty: --from must be before --to")
    match = _number_matcher(flt.number) if flt.number else None
    cdrs = await store.find_cdrs(since_ms=flt.since_ms, until_ms=flt.until_ms,
                                 project_id=flt.project.id if flt.project else None, card_id=flt.card_id,
                                 outcomes=flt.outcomes, last=None if match else last,
                                 call_types=flt.call_types, zones=flt.zones)
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
    _debited_by_price: dict[int, int] = field(default_factory=dict, repr=False)

    def add(self, cdr: Cdr, price_per_minute_cents: int | None) -> None:
        self.calls += 1
        self.answered += cdr.outcome == Outcome.ANSWERED
        self.talk_s += cdr.talk_s
        self.debited_s += cdr.debited_s
        if price_per_minute_cents is not None:
            price = price_per_minute_cents
            self._debited_by_price[price] = self._debited_by_price.get(price, 0) + cdr.debited_s

    def price(self) -> None:
        """Revenue: the debited seconds at the price each call was rated at (its CDR's own,
        never the project's price of today), rounded up to the cent once per price."""
        self.revenue_cents = sum(price_cents(s, ppm) for ppm, s in self._debited_by_price.items())


@dataclass(frozen=True)
class Report:
    by: str
    currency: str | None
    rows: list[ReportRow]
    totals: ReportRow


def rated_price(cdr: Cdr, projects: Mapping[int, Project]) -> tuple[int | None, str | None]:
    """The price per minute and currency ``cdr`` was rated at: its own. A row that has none
    (written past the store, by hand or an old tool) falls back to its project's price of
    today, as migration 8 did for the CDRs it found: the best there is."""
    if cdr.price_per_minute_cents is not None:
        return cdr.price_per_minute_cents, cdr.currency
    project_ = projects.get(cdr.project_id) if cdr.project_id is not None else None
    return (project_.price_per_minute_cents, project_.currency) if project_ else (None, None)


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
    if by == "type":
        return cdr.call_type or "-"
    if by == "zone":
        return cdr.zone or "-"
    return cdr.outcome


def _report_order(by: str, row: ReportRow) -> tuple[Any, ...]:
    if by == "month":
        return (row.key,)
    if by == "card":
        return (not row.key.isdigit(), int(row.key) if row.key.isdigit() else 0)
    return (-row.debited_s, -row.calls, row.key)


async def report(store: OperatorStore, cdrs: Sequence[Cdr], *, by: str, tz: tzinfo | None = None) -> Report:
    """Calls, answered calls, talk and debited seconds and revenue per group; revenue is the
    group's debited seconds priced at the price per minute each call was rated at (kept in
    its CDR; rounded up to the cent, like a card's price). Raises InvalidInput, CurrencyMismatch."""
    if by not in REPORT_BY:
        raise InvalidInput(f"report by {by!r}: one of {', '.join(REPORT_BY)}")
    projects = {p.id: p for p in await store.projects()}
    rated = [rated_price(c, projects) for c in cdrs]
    currencies = sorted({currency for _, currency in rated if currency is not None})
    if len(currencies) > 1:
        raise CurrencyMismatch(f"the calls are priced in {' and '.join(currencies)}: report one project"
                               " at a time (--project)")
    groups: dict[str, ReportRow] = {}
    totals = ReportRow(key="total")
    for cdr, (price, _) in zip(cdrs, rated, strict=True):
        key = _report_key(by, cdr, projects, tz)
        groups.setdefault(key, ReportRow(key=key)).add(cdr, price)
        totals.add(cdr, price)
    for row in [*groups.values(), totals]:
        row.price()
    currency = currencies[0] if currencies else (await store.account_settings()).currency
    rows = sorted(groups.values(), key=lambda r: _report_order(by, r))
    return Report(by=by, currency=currency, rows=rows, totals=totals)


# --- calendar: operator dates are local dates -----------------------------------
FIRST_DAY, LAST_DAY = date(1970, 1, 2), date(9998, 12, 30)


def parse_date(text: str) -> date:
    """``2026-11-23`` or ``23.11.2026``. Raises InvalidInput."""
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            day = datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
        if not FIRST_DAY <= day <= LAST_DAY:  # beyond these, the day's milliseconds leave datetime's range
            raise InvalidInput(f"date {text!r} out of range ({FIRST_DAY} to {LAST_DAY})")
        return day
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
