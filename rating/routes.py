"""Forwarding rules (Weiterleitungen), office hours and the destination policy.

A project's rules are tried in order. A rule names a destination (a dial string
such as ``PJSIP/100@office``, or a phone number dialled through the project's
trunk), the conditions under which it is tried and optionally office hours:

    conditions  always       the first leg, and any later leg whatever the last one did
                busy         after a leg that was busy
                noanswer     after a leg that rang out
                unavailable  after a leg that failed (congestion, channel unavailable)

The walk (``first_leg`` / ``next_leg``): the first rule open now with ``always`` is
dialled; when that leg is busy, not answered or unavailable, the next rule after
it that is open now and whose conditions hold is dialled, and so on. When no rule
is open for the first leg but some rule has office hours, the project is closed.

Office hours are wall-clock times in the project's time zone (zoneinfo, so a DST
change moves them with the clock): ``mon-fri 08:00-12:00,13:00-17:00; sat 09:00-12:00``
(German day names ``mo di mi do fr sa so`` too). A range whose end is not after its
start runs past midnight into the next day (``fri 22:00-02:00`` is Friday night).
Dated exceptions (public holidays) close the rule for the whole local calendar day.

A number destination is checked against the policy before any Dial:
allowed countries (default DE, AT, CH, FR, PL: the seed's "DACH-Länder sowie …
Frankreich und Polen"), blocked number types (default premium rate, shared cost,
personal numbers, UAN and satellite) and the outbound block list.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from .errors import InvalidInput, RatingError
from .numbers import PatternSet, parse_caller
from .zones import Zone, classify

__all__ = ["DEFAULT_BLOCKED_KINDS", "DEFAULT_COUNTRIES", "Condition", "DestinationPolicy", "DestinationRefused",
           "NumberInfo", "NumberKind", "OfficeHours", "Route", "check_number", "check_timezone",
           "describe_number", "dial_status_condition", "first_leg", "next_leg", "parse_conditions", "render_trunk"]


class DestinationRefused(RatingError):
    """A number destination the project's policy forbids (country, number type, block list)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason      # country | number_type | blocked | invalid


class Condition(enum.StrEnum):
    ALWAYS = "always"
    BUSY = "busy"
    NOANSWER = "noanswer"
    UNAVAILABLE = "unavailable"


_STATUS_CONDITION = {"BUSY": Condition.BUSY, "NOANSWER": Condition.NOANSWER,
                     "CONGESTION": Condition.UNAVAILABLE, "CHANUNAVAIL": Condition.UNAVAILABLE}


def dial_status_condition(status: str) -> Condition | None:
    """The condition a failed leg's DIALSTATUS satisfies; None (CANCEL, INVALIDARGS …) ends the walk."""
    return _STATUS_CONDITION.get(status)


def parse_conditions(text: str) -> frozenset[Condition]:
    """``"busy,noanswer"`` -> {BUSY, NOANSWER}. Raises InvalidInput."""
    words = [w.strip().lower().replace("-", "").replace("_", "") for w in text.split(",") if w.strip()]
    aliases = {"noreply": "noanswer", "congestion": "unavailable", "failed": "unavailable"}
    try:
        found = frozenset(Condition(aliases.get(w, w)) for w in words)
    except ValueError:
        raise InvalidInput(f"condition {text!r}: always, busy, noanswer, unavailable (comma-separated)") from None
    if not found:
        raise InvalidInput("a rule needs a condition: always, busy, noanswer or unavailable")
    if Condition.ALWAYS in found and len(found) > 1:
        raise InvalidInput("'always' already covers busy, noanswer and unavailable")
    return found


# --- office hours ------------------------------------------------------------
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
         "mo": 0, "di": 1, "mi": 2, "do": 3, "fr": 4, "sa": 5, "so": 6}
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_RE = re.compile(r"^([01]?[0-9]|2[0-4]):([0-5][0-9])$")


def _minute(text: str, *, end: bool) -> int:
    m = _TIME_RE.match(text)
    if not m or (m.group(1) == "24" and (not end or m.group(2) != "00")):
        raise InvalidInput(f"time {text!r}: HH:MM, 00:00 to 23:59 (24:00 as an end)")
    return int(m.group(1)) * 60 + int(m.group(2))


def _days(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise InvalidInput(f"days {text!r}: mon..sun (or mo..so), ranges like mon-fri, lists like mon,wed")
        a, b = _DAYS[first], _DAYS[last or first]
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


@dataclass(frozen=True)
class TimeRange:
    days: frozenset[int]    # 0 = Monday, the day the range starts
    start_min: int
    end_min: int            # 1440 = 24:00; <= start_min: ends the next day

    def open_at(self, weekday: int, minute: int) -> bool:
        if self.start_min < self.end_min:
            return weekday in self.days and self.start_min <= minute < self.end_min
        return ((weekday in self.days and minute >= self.start_min)
                or ((weekday - 1) % 7 in self.days and minute < self.end_min))


@dataclass(frozen=True)
class OfficeHours:
    ranges: tuple[TimeRange, ...]
    closed_on: frozenset[date] = frozenset()

    @classmethod
    def parse(cls, text: str, closed_on: str = "") -> OfficeHours:
        """``"mon-fri 08:00-12:00,13:00-17:00; sat 09:00-12:00"`` and
        ``"2026-12-25,2026-12-26"``. Raises InvalidInput."""
        ranges: list[TimeRange] = []
        for clause in filter(None, (c.strip() for c in text.split(";"))):
            days_text, _, times_text = clause.partition(" ")
            if not times_text.strip():
                raise InvalidInput(f"office hours {clause!r}: days then times, e.g. 'mon-fri 08:00-17:00'")
            days = _days(days_text)
            for span in times_text.replace(" ", "").split(","):
                start, sep, end = span.partition("-")
                if not sep:
                    raise InvalidInput(f"time range {span!r}: HH:MM-HH:MM")
                a, b = _minute(start, end=False), _minute(end, end=True)
                if a == b:
                    raise InvalidInput(f"time range {span!r} is empty")
                ranges.append(TimeRange(days=days, start_min=a, end_min=b))
        if not ranges:
            raise InvalidInput("office hours need at least one range, e.g. 'mon-fri 08:00-17:00'")
        dates: set[date] = set()
        for item in filter(None, (d.strip() for d in closed_on.split(","))):
            try:
                dates.add(date.fromisoformat(item))
            except ValueError:
                raise InvalidInput(f"closed-on date {item!r}: YYYY-MM-DD") from None
        return cls(ranges=tuple(ranges), closed_on=frozenset(dates))

    def open_at(self, now_ms: int, timezone: str) -> bool:
        local = datetime.fromtimestamp(now_ms // 1000, UTC).astimezone(ZoneInfo(timezone))
        if local.date() in self.closed_on:
            return False
        minute = local.hour * 60 + local.minute
        return any(r.open_at(local.weekday(), minute) for r in self.ranges)

    def text(self) -> str:
        """The canonical form ``parse`` reads back."""
        clauses: list[str] = []
        for r in self.ranges:
            days = ",".join(_DAY_NAMES[d] for d in sorted(r.days))
            start, end = r.start_min, r.end_min
            clauses.append(f"{days} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}")
        return "; ".join(clauses)

    def closed_text(self) -> str:
        return ",".join(d.isoformat() for d in sorted(self.closed_on))


def check_timezone(name: str) -> str:
    """Raises InvalidInput unless ``name`` is a zoneinfo key (Europe/Zurich)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"time zone {name!r}: a zoneinfo name such as Europe/Zurich or Europe/Berlin") from None
    return name


# --- rules and the walk -----------------------------------------------------
@dataclass(frozen=True)
class Route:
    position: int                        # 1-based order in the project
    destination: str                     # a dial string (has '/') or an E.164 number
    conditions: frozenset[Condition]
    hours: OfficeHours | None = None
    ring_timeout_s: int | None = None    # None: the project's

    @property
    def is_number(self) -> bool:
        return "/" not in self.destination

    def applies_after(self, previous: Condition | None) -> bool:
        if Condition.ALWAYS in self.conditions:
            return True
        return previous is not None and previous in self.conditions

    def open_at(self, now_ms: int, timezone: str) -> bool:
        return self.hours is None or self.hours.open_at(now_ms, timezone)

    def conditions_text(self) -> str:
        return ",".join(c.value for c in Condition if c in self.conditions)


def first_leg(routes: tuple[Route, ...], now_ms: int, timezone: str) -> Route | None:
    return next((r for r in routes if r.applies_after(None) and r.open_at(now_ms, timezone)), None)


def next_leg(routes: tuple[Route, ...], after: Route, failed: Condition, now_ms: int, timezone: str) -> Route | None:
    return next((r for r in routes if r.position > after.position and r.applies_after(failed)
                 and r.open_at(now_ms, timezone)), None)


# --- number destinations ----------------------------------------------------
class NumberKind(enum.StrEnum):
    FIXED_LINE = "fixed_line"
    MOBILE = "mobile"
    FIXED_OR_MOBILE = "fixed_or_mobile"
    TOLL_FREE = "toll_free"
    PREMIUM_RATE = "premium_rate"
    SHARED_COST = "shared_cost"
    VOIP = "voip"
    PERSONAL = "personal"
    PAGER = "pager"
    UAN = "uan"
    VOICEMAIL = "voicemail"
    SATELLITE = "satellite"
    UNKNOWN = "unknown"
    DIAL_STRING = "dial_string"          # not a number: the operator's own dial string


_KIND_OF_TYPE = {
    phonenumbers.PhoneNumberType.FIXED_LINE: NumberKind.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE: NumberKind.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: NumberKind.FIXED_OR_MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE: NumberKind.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE: NumberKind.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.SHARED_COST: NumberKind.SHARED_COST,
    phonenumbers.PhoneNumberType.VOIP: NumberKind.VOIP,
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER: NumberKind.PERSONAL,
    phonenumbers.PhoneNumberType.PAGER: NumberKind.PAGER,
    phonenumbers.PhoneNumberType.UAN: NumberKind.UAN,
    phonenumbers.PhoneNumberType.VOICEMAIL: NumberKind.VOICEMAIL,
}
# Inmarsat (+870) and the global mobile satellite systems (+881: Iridium, Globalstar, Thuraya):
# phonenumbers has no satellite type, and a minute there costs several euros.
_SATELLITE_CODES = frozenset({870, 881})

DEFAULT_COUNTRIES: tuple[str, ...] = ("DE", "AT", "CH", "FR", "PL")
DEFAULT_BLOCKED_KINDS: tuple[NumberKind, ...] = (
    NumberKind.PREMIUM_RATE, NumberKind.SHARED_COST, NumberKind.PERSONAL, NumberKind.UAN, NumberKind.SATELLITE)


@dataclass(frozen=True)
class DestinationPolicy:
    countries: tuple[str, ...] = DEFAULT_COUNTRIES
    blocked_kinds: tuple[NumberKind, ...] = DEFAULT_BLOCKED_KINDS


@dataclass(frozen=True)
class NumberInfo:
    e164: str
    country: str           # ISO region, "001" for non-geographic (satellite, UIFN)
    kind: NumberKind
    zone: Zone


def describe_number(e164: str, home: str) -> NumberInfo:
    """Country, type and zone of an E.164 number, for a project in country ``home``.

    Raises:
        DestinationRefused(reason="invalid"): not a valid, dialable number.
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        raise DestinationRefused(f"{e164} is not a phone number", reason="invalid") from None
    if not phonenumbers.is_valid_number(parsed):
        raise DestinationRefused(f"{e164} is not a valid number", reason="invalid")
    country = phonenumbers.region_code_for_number(parsed) or "001"
    if parsed.country_code in _SATELLITE_CODES:
        kind = NumberKind.SATELLITE
    else:
        kind = _KIND_OF_TYPE.get(phonenumbers.number_type(parsed), NumberKind.UNKNOWN)
    return NumberInfo(e164=e164, country=country, kind=kind,
                      zone=classify(country, mobile=kind is NumberKind.MOBILE, home=home))


def check_number(e164: str, *, home: str, policy: DestinationPolicy, blocks: PatternSet) -> NumberInfo:
    """The number's description if the policy lets the project dial it.

    Raises:
        DestinationRefused: invalid, a country not allowed, a blocked type, an outbound block.
    """
    info = describe_number(e164, home)
    if info.country not in policy.countries:
        raise DestinationRefused(f"{e164} is in {info.country}, not an allowed country"
                                 f" ({', '.join(policy.countries) or 'none'})", reason="country")
    if info.kind in policy.blocked_kinds:
        raise DestinationRefused(f"{e164} is a {info.kind.value.replace('_', '-')} number, a blocked type",
                                 reason="number_type")
    pattern = blocks.first_match(parse_caller(e164, home))
    if pattern is not None:
        raise DestinationRefused(f"{e164} matches the outbound block {pattern}", reason="blocked")
    return info


_PLACEHOLDERS = ("{e164}", "{international}", "{national}")


def render_trunk(template: str, e164: str, home: str) -> str:
    """``PJSIP/{e164}@carrier`` -> ``PJSIP/+41441234567@carrier`` ({international} gives
    0041…, {national} 044… in the project's country). Raises InvalidInput for a template
    without exactly one placeholder."""
    found = [p for p in _PLACEHOLDERS if p in template]
    if not template or len(found) != 1 or template.count(found[0]) != 1:
        raise InvalidInput(f"trunk {template!r}: a dial string with one of {', '.join(_PLACEHOLDERS)},"
                           " e.g. PJSIP/{e164}@carrier")
    if found[0] == "{e164}":
        number = e164
    elif found[0] == "{international}":
        number = "00" + e164[1:]
    else:
        number = parse_caller(e164, home).national or ("00" + e164[1:])
        if phonenumbers.region_code_for_number(phonenumbers.parse(e164, None)) != home:
            number = "00" + e164[1:]
    return template.replace(found[0], number)
