"""Forwarding rules, office hours, the destination policy and zone factors: calls from
the fake Asterisk over loopback through the real engine, with the clock injected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asterisk_sim import parse_args
from ivr import operations as ops
from ivr.clock import ManualClock, SystemClock
from prompts import Prompt, remaining_time, sound
from rating.errors import InvalidInput
from rating.routes import DestinationRefused, OfficeHours, Route, parse_conditions

from .conftest import Harness, make_harness

TRUNK = "PJSIP/{e164}@carrier"


def at(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def dials(rec: Any) -> list[list[str]]:
    """Each EXEC Dial's arguments: [destination, ring timeout, options]."""
    return [parse_args(c)[2].split(",") for c in rec.commands if parse_args(c)[:2] == ["EXEC", "Dial"]]


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock(at(2026, 12, 2, 9, 0))   # Wednesday 10:00 in Zürich


@pytest.fixture
async def r(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Harness]:
    harness = await make_harness(tmp_path, clock=clock)
    harness.project = await harness.store.update_project(harness.project.id, changes={"trunk": TRUNK})
    yield harness
    await harness.engine.stop(grace_s=5)


async def rules(h: Harness, *specs: dict[str, Any]) -> None:
    """Replace the project's rules by these (each: the keyword arguments of ops.add_route)."""
    old = len(h.project.routes)
    for spec in specs:
        h.project, _ = await ops.add_route(h.store, h.project, **spec)
    for _ in range(old):
        h.project = await ops.remove_route(h.store, h.project, 1)


OFFICE = "mon-fri 08:00-12:00,13:00-17:00"


async def test_inside_office_hours_the_rule_is_dialled(r: Harness) -> None:
    await rules(r, dict(destination="Local/100@prepaid-service/n", hours=OFFICE))
    card, pin = await r.card()
    rec = await r.call(digits=[pin + "#"], dials=[dict(talk_ms=30_000)])
    assert [d[0] for d in dials(rec)] == ["Local/100@prepaid-service/n"]
    [cdr] = await r.cdrs()
    assert (cdr.outcome, cdr.call_type, cdr.route_position, cdr.leg, cdr.zone) == (
        "ANSWERED", "service", 1, 1, "internal")
    assert await r.balance(card) == 570


@pytest.mark.parametrize("moment", [
    at(2026, 12, 2, 11, 30),   # Wednesday 12:30, lunch
    at(2026, 12, 2, 16, 0),    # Wednesday 17:00
    at(2026, 12, 5, 9, 0),     # Saturday
    at(2026, 12, 25, 9, 0),    # Christmas (a Friday), a dated exception
])
async def test_outside_office_hours_the_closed_prompt_plays_and_nothing_is_debited(
        r: Harness, clock: ManualClock, moment: int) -> None:
    await rules(r, dict(destination="Local/100@prepaid-service/n", hours=OFFICE, closed_on="2026-12-25"))
    card, pin = await r.card()
    clock._now_ms = moment
    rec = await r.call(digits=[pin + "#"])
    assert not dials(rec)
    assert rec.prompts_played == [sound(Prompt.CLOSED), sound(Prompt.GOODBYE)]   # no PIN asked
    assert [parse_args(c)[0] for c in rec.commands][:1] == ["ANSWER"]          # after an answer
    [cdr] = await r.cdrs()
    assert (cdr.outcome, cdr.call_type, cdr.debited_s, cdr.card_id) == ("CLOSED", "closed", 0, None)
    assert await r.balance(card) == 600


async def test_the_operators_closed_recording_replaces_the_standard_one(r: Harness, clock: ManualClock,
                                                                        tmp_path: Path) -> None:
    import wave

    from prompts.importer import import_recording

    src = tmp_path / "zu.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x20" * 8000)
    own = import_recording(src, "test1", "closed", "de", sounds_dir=tmp_path / "sounds")
    object.__setattr__(r.engine, "settings", r.engine.settings.__class__(
        **{**r.engine.settings.__dict__, "sounds_dir": str(tmp_path / "sounds")}))
    await rules(r, dict(destination="Local/100@prepaid-service/n", hours=OFFICE))
    clock._now_ms = at(2026, 12, 6, 9, 0)  # Sunday
    rec = await r.call()
    assert rec.prompts_played[0] == own


async def test_after_hours_rule_takes_over_across_midnight(r: Harness, clock: ManualClock) -> None:
    await rules(r, dict(destination="Local/100@prepaid-service/n", hours=OFFICE),
                dict(destination="Local/night@prepaid-service/n", hours="fri 22:00-02:00"))
    card, pin = await r.card()
    clock._now_ms = at(2026, 12, 5, 0, 30)   # Saturday 01:30 local: Friday's night shift
    rec = await r.call(digits=[pin + "#"], dials=[dict(talk_ms=10_000)])
    assert [d[0] for d in dials(rec)] == ["Local/night@prepaid-service/n"]
    clock._now_ms = at(2026, 12, 5, 1, 30)   # Saturday 02:30: closed
    rec = await r.call()
    assert not dials(rec) and (await r.cdrs())[-1].outcome == "CLOSED"


async def test_office_hours_follow_the_wall_clock_on_a_dst_change(r: Harness, clock: ManualClock) -> None:
    await rules(r, dict(destination="Local/100@prepaid-service/n", hours="sun 09:00-17:00"))
    card, pin = await r.card()
    clock._now_ms = at(2026, 3, 29, 7, 30)   # 09:30 CEST, the first day of summer time
    rec = await r.call(digits=[pin + "#"], dials=[dict(talk_ms=10_000)])
    assert len(dials(rec)) == 1
    clock._now_ms = at(2026, 10, 25, 7, 30)  # 08:30 CET, the first day of winter time: closed
    rec = await r.call()
    assert not dials(rec) and (await r.cdrs())[-1].call_type == "closed"


async def test_busy_goes_to_the_next_matching_leg_with_its_own_ring_timeout(r: Harness) -> None:
    await rules(r, dict(destination="Local/100@prepaid-service/n", ring_timeout_s=20),
                dict(destination="Local/300@prepaid-service/n", when="noanswer"),
                dict(destination="Local/200@prepaid-service/n", when="busy", ring_timeout_s=15))
    card, pin = await r.card()
    rec = await r.call(digits=[pin + "#"], dials=[dict(outcome="busy"), dict(talk_ms=42_000)])
    assert [d[:2] for d in dials(rec)] == [["Local/100@prepaid-service/n", "20"],
                                          ["Local/200@prepaid-service/n", "15"]]
    assert await r.balance(card) == 600 - 42
    [cdr] = await r.cdrs()
    assert (cdr.call_type, cdr.route_position, cdr.leg, cdr.debited_s) == ("fallback", 3, 2, 42)
    assert [e.seconds for e in await r.store.ledger(card.id)] == [600, -42]   # one debit: the answered leg


async def test_all_legs_unanswered_debit_nothing(r: Harness) -> None:
    await rules(r, dict(destination="Local/100@prepaid-service/n", ring_timeout_s=10),
                dict(destination="Local/200@prepaid-service/n", when="noanswer,unavailable", ring_timeout_s=10),
                dict(destination="Local/300@prepaid-service/n", when="busy"))
    card, pin = await r.card()
    rec = await r.call(digits=[pin + "#"], dials=[dict(outcome="noanswer"), dict(outcome="congestion")])
    assert len(dials(rec)) == 2              # congestion is not busy: rule 3 is not tried
    assert sound(Prompt.SERVICE_UNAVAILABLE) in rec.prompts_played
    [cdr] = await r.cdrs()
    assert (cdr.outcome, cdr.debited_s, cdr.leg) == ("FAILED", 0, 2)
    card_after = await r.store.card(card.id)
    assert (card_after.balance_s, card_after.reserved_s) == (600, 0)


async def test_a_number_in_an_allowed_country_is_dialled_through_the_trunk(r: Harness) -> None:
    await rules(r, dict(destination="+49 30 1234567"))
    card, pin = await r.card()
    rec = await r.call(digits=[pin + "#"], dials=[dict(talk_ms=20_000)])
    assert [d[0] for d in dials(rec)] == ["PJSIP/+49301234567@carrier"]
    [cdr] = await r.cdrs()
    assert (cdr.call_type, cdr.zone, cdr.number_type, cdr.factor_pm) == ("forwarded", "eu", "fixed_line", 1000)


async def test_forbidden_destinations_are_refused_when_added(r: Harness) -> None:
    with pytest.raises(DestinationRefused) as refused:
        await ops.add_route(r.store, r.project, destination="+12125550123")
    assert refused.value.reason == "country"
    with pytest.raises(DestinationRefused) as refused:
        await ops.add_route(r.store, r.project, destination="+499001234567")   # premium rate
    assert refused.value.reason == "number_type"
    await ops.blacklist_add(r.store, pattern="04411x.", project=r.project, direction="outbound", reason="",
                            added_by="test", now_ms=SystemClock().now_ms())
    with pytest.raises(DestinationRefused) as refused:
        await ops.add_route(r.store, r.project, destination="0441100000")
    assert refused.value.reason == "blocked"
    plain = await r.store.update_project(r.project.id, changes={"trunk": ""})
    with pytest.raises(InvalidInput):
        await ops.add_route(r.store, plain, destination="+41441110000")
    assert len((await r.store.project_by_id(r.project.id)).routes) == 1   # nothing was added


async def _force_rule(h: Harness, destination: str) -> None:
    """A rule the policy refuses today (added before the policy changed), as rule 1."""
    h.project = await h.store.add_route(h.project.id, Route(1, destination, parse_conditions("always")), position=1)


@pytest.mark.parametrize("destination,call_type", [
    ("+12125550123", "refused"),       # a forbidden country
    ("+499001234567", "refused"),      # a premium-rate number
    ("+41441100000", "blocked"),       # an outbound x-pattern
])
async def test_forbidden_destinations_are_refused_again_at_call_time(
        r: Harness, destination: str, call_type: str) -> None:
    await ops.blacklist_add(r.store, pattern="04411x.", project=r.project, direction="outbound", reason="",
                            added_by="test", now_ms=SystemClock().now_ms())
    await _force_rule(r, destination)
    r.project = await r.store.remove_route(r.project.id, 2)     # the refused rule is the only one
    card, pin = await r.card()
    rec = await r.call(digits=[pin + "#"])
    assert not dials(rec)
    assert not any(parse_args(c)[:2] == ["GET", "DATA"] for c in rec.commands)   # refused before the PIN
    [cdr] = await r.cdrs()
    assert (cdr.outcome, cdr.call_type, cdr.debited_s) == ("BLOCKED_DESTINATION", call_type, 0)


async def test_a_refused_leg_hands_over_to_the_next_rule(r: Harness) -> None:
    await rules(r, dict(destination="Local/200@prepaid-service/n", when="busy"))
    await _force_rule(r, "+12125550123")
    card, pin = await r.card()
    rec = await r.call(digits=[pin + "#"], dials=[dict(talk_ms=5_000)])
    assert [d[0] for d in dials(rec)] == ["Local/200@prepaid-service/n"]
    assert (await r.cdrs())[-1].call_type == "service"   # the first Dial of the call


async def test_zone_factor_applies_to_the_limit_the_announcement_and_the_debit(r: Harness) -> None:
    r.project = await ops.set_zones(r.store, r.project, factors={"national": "1.2"})
    await rules(r, dict(destination="044 111 00 00"))
    card, pin = await r.card(seconds=600)
    rec = await r.call(digits=[pin + "#"], dials=[dict(talk_ms=100_000)])
    [dial] = dials(rec)
    assert dial[2].endswith("L(500000:60000)")             # 600 s of card time at 1.2 = 500 s of talk
    assert parse_args(rec.commands[3])[2].split("&")[1:] == remaining_time(500, "de")
    [cdr] = await r.cdrs()
    assert (cdr.zone, cdr.factor_pm, cdr.talk_s, cdr.debited_s) == ("national", 1200, 100, 120)
    assert await r.balance(card) == 480
    # a mobile number is another zone: its factor is still 1000
    await rules(r, dict(destination="079 123 45 67"))
    rec = await r.call(dials=[dict(talk_ms=100_000)])
    assert (await r.cdrs())[-1].zone == "national_mobile"
    assert dials(rec)[0][2].endswith("L(480000:60000)")
    assert await r.balance(card) == 380


async def test_a_dearer_fallback_leg_is_announced_again_before_its_dial(r: Harness) -> None:
    # issue 12: the caller heard the first leg's 600 s; the busy service hands over to a
    # number at 1.2, which allows 500 s: that is said before it rings, never more.
    r.project = await ops.set_zones(r.store, r.project, factors={"national": "1.2"})
    await rules(r, dict(destination="Local/100@prepaid-service/n"),
                dict(destination="044 111 00 00", when="busy"))
    card, pin = await r.card(seconds=600)
    rec = await r.call(digits=[pin + "#"], dials=[dict(outcome="busy"), dict(talk_ms=10_000)])
    first, second = dials(rec)
    assert first[2].endswith("L(600000:60000)") and second[2].endswith("L(500000:60000)")
    playbacks = [parse_args(c)[2].split("&") for c in rec.commands if parse_args(c)[:2] == ["EXEC", "Playback"]]
    assert playbacks == [[sound(Prompt.PIN_ACCEPTED), *remaining_time(600, "de")], remaining_time(500, "de")]
    dial_at = [i for i, c in enumerate(rec.commands) if parse_args(c)[:2] == ["EXEC", "Dial"]]
    again = next(i for i, c in enumerate(rec.commands) if parse_args(c)[2:3] == ["&".join(remaining_time(500, "de"))])
    assert dial_at[0] < again < dial_at[1]
    assert (await r.cdrs())[-1].debited_s == 12


async def test_the_quota_is_used_once_per_card_and_month(r: Harness, clock: ManualClock) -> None:
    r.project = await ops.set_zones(r.store, r.project, factors={"eu": "1300"}, quota_minutes="1")
    await rules(r, dict(destination="+49 30 1234567"))
    card, pin = await r.card(minutes=30)
    await r.call(digits=[pin + "#"], dials=[dict(talk_ms=100_000)])
    await r.call(dials=[dict(talk_ms=10_000)])
    clock._now_ms = at(2027, 1, 1, 0, 30)                 # 01:30 in Zürich: a new month
    await r.call(dials=[dict(talk_ms=10_000)])
    got = [(c.quota_used_s, c.debited_s) for c in await r.cdrs()]
    assert got == [(60, 60 + 52), (0, 13), (10, 10)]
    assert await r.store.quota_used(card.id, "2026-12") == 60
    assert await r.store.quota_used(card.id, "2027-01") == 10
    assert await r.balance(card) == 1800 - 112 - 13 - 10


async def test_the_quota_is_not_spent_on_internal_legs(r: Harness) -> None:
    r.project = await ops.set_zones(r.store, r.project, factors={"eu": "1300"}, quota_minutes="1")
    card, pin = await r.card()
    await r.call(digits=[pin + "#"], dials=[dict(talk_ms=30_000)])
    [cdr] = await r.cdrs()
    assert (cdr.zone, cdr.quota_used_s, cdr.debited_s) == ("internal", 0, 30)


async def test_every_cdr_has_a_call_type(r: Harness) -> None:
    card, pin = await r.card()
    await r.call(digits=[pin + "#"], dials=[dict(talk_ms=1_000)])
    await r.call(caller_id="anonymous", digits=["", "", ""])
    await ops.blacklist_add(r.store, pattern="+4179x.", project=r.project, direction="inbound", reason="",
                            added_by="test", now_ms=SystemClock().now_ms())
    await r.call()
    types = [(c.outcome, c.call_type) for c in await r.cdrs()]
    assert types == [("ANSWERED", "service"), ("PIN_FAILED", "refused"), ("BLOCKED_CALLER", "blocked")]


async def test_service_and_fallback_remain_the_first_rules(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, fallback="Local/200@prepaid-service/n")
    try:
        assert [(x.destination, x.conditions_text()) for x in h.project.routes] == [
            ("Local/100@prepaid-service/n", "always"), ("Local/200@prepaid-service/n", "busy,noanswer")]
        h.project = await ops.update_project(h.store, h.project, values={"fallback": None})
        assert len(h.project.routes) == 1 and h.project.fallback is None
        h.project = await ops.update_project(h.store, h.project, values={"service": "Local/101@prepaid-service/n",
                                                                         "fallback": "Local/201@prepaid-service/n"})
        assert [x.destination for x in h.project.routes] == ["Local/101@prepaid-service/n",
                                                               "Local/201@prepaid-service/n"]
        with pytest.raises(InvalidInput):
            await ops.remove_route(h.store, await ops.remove_route(h.store, h.project, 2), 1)
    finally:
        await h.engine.stop(grace_s=1)


def test_office_hours_text_is_what_the_store_reads_back() -> None:
    hours = OfficeHours.parse(OFFICE, "2026-12-25")
    assert OfficeHours.parse(hours.text(), hours.closed_text()) == hours
