"""Office hours, the walk over the rules, the destination policy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rating.errors import InvalidInput
from rating.numbers import PatternSet
from rating.routes import (
    Condition,
    DestinationPolicy,
    DestinationRefused,
    NumberKind,
    OfficeHours,
    Route,
    check_number,
    check_timezone,
    describe_number,
    first_leg,
    next_leg,
    parse_conditions,
    render_trunk,
)
from rating.zones import Zone

ZH = "Europe/Zurich"


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_office_hours_inside_outside_and_lunch() -> None:
    hours = OfficeHours.parse("mon-fri 08:00-12:00,13:00-17:00; sat 09:00-12:00")
    # Wednesday 2026-12-02, Zürich is UTC+1 in winter
    assert hours.open_at(ms(2026, 12, 2, 7, 0), ZH)          # 08:00 local
    assert not hours.open_at(ms(2026, 12, 2, 6, 59), ZH)     # 07:59
    assert not hours.open_at(ms(2026, 12, 2, 11, 30), ZH)    # 12:30 lunch
    assert not hours.open_at(ms(2026, 12, 2, 16, 0), ZH)     # 17:00: the end is not included
    assert hours.open_at(ms(2026, 12, 5, 10, 0), ZH)         # Saturday 11:00
    assert not hours.open_at(ms(2026, 12, 6, 10, 0), ZH)     # Sunday


def test_a_holiday_closes_the_day() -> None:
    hours = OfficeHours.parse("mo-fr 08:00-17:00", "2026-12-25,2026-12-26")
    assert not hours.open_at(ms(2026, 12, 25, 9, 0), ZH)     # Friday, Christmas
    assert hours.open_at(ms(2026, 12, 24, 9, 0), ZH)
    # 2026-12-24 23:30 UTC is already the 25th in Zürich
    night = OfficeHours.parse("mon-sun 00:00-24:00", "2026-12-25")
    assert night.open_at(ms(2026, 12, 24, 22, 30), ZH)
    assert not night.open_at(ms(2026, 12, 24, 23, 30), ZH)


def test_hours_across_midnight_belong_to_the_day_they_start() -> None:
    hours = OfficeHours.parse("fri 22:00-02:00")
    assert hours.open_at(ms(2026, 12, 4, 21, 30), ZH)        # Friday 22:30
    assert hours.open_at(ms(2026, 12, 5, 0, 30), ZH)         # Saturday 01:30
    assert not hours.open_at(ms(2026, 12, 5, 1, 0), ZH)      # Saturday 02:00
    assert not hours.open_at(ms(2026, 12, 4, 0, 30), ZH)     # Friday 01:30 (Thursday night is not open)
    sunday_night = OfficeHours.parse("sun 23:00-01:00")
    assert not sunday_night.open_at(ms(2026, 12, 7, 23, 30), ZH)   # Tuesday 00:30 local
    assert sunday_night.open_at(ms(2026, 12, 6, 23, 30), ZH)  # Monday 00:30 local: Sunday's night


def test_hours_follow_the_wall_clock_across_a_dst_change() -> None:
    hours = OfficeHours.parse("sa,so 09:00-17:00")
    # Saturday 2026-03-28, CET (UTC+1): 07:30 UTC is 08:30 — closed
    assert not hours.open_at(ms(2026, 3, 28, 7, 30), ZH)
    # Sunday 2026-03-29, CEST since 01:00 UTC: 07:30 UTC is 09:30 — open
    assert hours.open_at(ms(2026, 3, 29, 7, 30), ZH)
    # and back: Sunday 2026-10-25 is CET again, 15:30 UTC is 16:30 — open, 16:30 UTC is 17:30 — closed
    assert hours.open_at(ms(2026, 10, 25, 15, 30), ZH)
    assert not hours.open_at(ms(2026, 10, 25, 16, 30), ZH)


@pytest.mark.parametrize("text", ["", "mon", "xyz 08:00-10:00", "mon 8-10", "mon 10:00-10:00",
                                  "mon 25:00-26:00", "mon 24:00-02:00"])
def test_bad_office_hours_are_one_error(text: str) -> None:
    with pytest.raises(InvalidInput):
        OfficeHours.parse(text)
    with pytest.raises(InvalidInput):
        OfficeHours.parse("mon 08:00-10:00", "24.12.2026")


def test_office_hours_print_as_they_parse() -> None:
    hours = OfficeHours.parse("mo-fr 08:00-12:00,13:00-17:00; sa 22:00-02:00; so 00:00-24:00", "2026-12-25")
    again = OfficeHours.parse(hours.text(), hours.closed_text())
    assert again == hours
    assert hours.text().startswith("mon,tue,wed,thu,fri 08:00-12:00")


def test_conditions() -> None:
    assert parse_conditions("busy,noanswer") == {Condition.BUSY, Condition.NOANSWER}
    assert parse_conditions("congestion") == {Condition.UNAVAILABLE}
    for bad in ("", "sometimes", "always,busy"):
        with pytest.raises(InvalidInput):
            parse_conditions(bad)
    with pytest.raises(InvalidInput):
        check_timezone("Mars/Olympus")


def test_the_walk_takes_the_next_rule_whose_condition_holds() -> None:
    day = OfficeHours.parse("mon-fri 08:00-17:00")
    routes = (
        Route(1, "PJSIP/100@office", frozenset({Condition.ALWAYS}), day),
        Route(2, "PJSIP/200@office", frozenset({Condition.BUSY}), day),
        Route(3, "+41441110000", frozenset({Condition.NOANSWER, Condition.BUSY})),
        Route(4, "PJSIP/mailbox@office", frozenset({Condition.ALWAYS})),
    )
    monday = ms(2026, 11, 30, 9, 0)
    assert first_leg(routes, monday, ZH) == routes[0]
    assert next_leg(routes, routes[0], Condition.BUSY, monday, ZH) == routes[1]
    assert next_leg(routes, routes[0], Condition.NOANSWER, monday, ZH) == routes[2]
    assert next_leg(routes, routes[0], Condition.UNAVAILABLE, monday, ZH) == routes[3]
    assert next_leg(routes, routes[3], Condition.BUSY, monday, ZH) is None
    night = ms(2026, 11, 30, 22, 0)
    assert first_leg(routes, night, ZH) == routes[3]      # the after-hours rule
    assert first_leg(routes[:3], night, ZH) is None       # closed


def test_numbers_are_described_and_checked_against_the_policy() -> None:
    policy = DestinationPolicy()
    none = PatternSet([], "CH")
    info = check_number("+41441234567", home="CH", policy=policy, blocks=none)
    assert (info.country, info.kind, info.zone) == ("CH", NumberKind.FIXED_LINE, Zone.NATIONAL)
    assert describe_number("+4915112345678", "CH").zone is Zone.EU
    assert describe_number("+41791234567", "CH").zone is Zone.NATIONAL_MOBILE
    cases = {
        "+12125550123": "country",          # USA: not allowed by default
        "+499001234567": "number_type",     # German premium rate
        "+41848123456": "number_type",      # Swiss shared cost
        "+4970012345678": "number_type",    # German personal number
        "+8816123456789": "country",        # Iridium: non-geographic
        "+4932123456": "invalid",
    }
    for number, reason in cases.items():
        with pytest.raises(DestinationRefused) as refused:
            check_number(number, home="CH", policy=policy, blocks=none)
        assert refused.value.reason == reason, number
    open_world = DestinationPolicy(countries=("001", "CH"))
    with pytest.raises(DestinationRefused) as refused:
        check_number("+8816123456789", home="CH", policy=open_world, blocks=none)
    assert refused.value.reason == "number_type"
    with pytest.raises(DestinationRefused) as refused:
        check_number("+41441234567", home="CH", policy=policy, blocks=PatternSet(["044123456x"], "CH"))
    assert refused.value.reason == "blocked"


def test_trunk_templates() -> None:
    assert render_trunk("PJSIP/{e164}@carrier", "+41441234567", "CH") == "PJSIP/+41441234567@carrier"
    assert render_trunk("PJSIP/{international}@c", "+41441234567", "CH") == "PJSIP/0041441234567@c"
    assert render_trunk("PJSIP/{national}@c", "+41441234567", "CH") == "PJSIP/0441234567@c"
    assert render_trunk("PJSIP/{national}@c", "+4930123456", "CH") == "PJSIP/004930123456@c"
    for bad in ("", "PJSIP/100@office", "PJSIP/{e164}{e164}@c"):
        with pytest.raises(InvalidInput):
            render_trunk(bad, "+41441234567", "CH")
