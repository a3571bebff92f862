"""What callers are told about their time (issue 12, items 8 and 9), driven over TCP
loopback by the fake Asterisk against the real engine: the announcement is this call's
``L()``, the cut-off warning says the time really left when it plays, and a bound line
whose card is used up hears why and ends as NO_CREDIT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asterisk_sim import parse_args
from ivr import operations as ops
from ivr.clock import SystemClock
from prompts import Prompt, remaining_time, sound, text_of, warning_sound
from rating.billing import BillingRule

from .conftest import CALLER, Harness, make_harness


def words(command: str) -> list[str]:
    return parse_args(command)


def dials(rec: Any) -> list[str]:
    return [words(c)[2] for c in rec.commands if words(c)[:2] == ["EXEC", "Dial"]]


def announced(rec: Any) -> list[str]:
    """The sounds of the Playback right before the (first) Dial."""
    playbacks = [words(c)[2] for c in rec.commands if words(c)[:2] == ["EXEC", "Playback"]]
    return playbacks[-1].split("&")


def warning_files(rec: Any) -> list[str]:
    return [words(c)[3] for c in rec.commands if words(c)[:3] == ["SET", "VARIABLE", "LIMIT_WARNING_FILE"]]


async def harness(tmp_path: Path, **project: Any) -> Harness:
    return await make_harness(tmp_path, **project)


async def test_two_call_slots_announce_and_warn_what_this_call_holds(tmp_path: Path) -> None:
    # The issue: a 60 s card, --max-calls 2: "you have 1 minute", L(30000), no warning.
    h = await harness(tmp_path, max_simultaneous_calls=2)
    try:
        card, pin = await h.card(seconds=60)
        rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=120_000)])
        assert announced(rec) == [sound(Prompt.PIN_ACCEPTED), *remaining_time(30, "de")]
        assert text_of("ivr/digits/30", "de") == "dreißig"
        [dial] = dials(rec)
        # shorter than the 60 s threshold: warned 5 s after the answer, "in 25 seconds"
        assert dial.endswith("L(30000:25000)")
        assert warning_files(rec) == ["ivr/warning/25"]
        assert text_of("ivr/warning/25", "de") == "Ihre Gesprächszeit endet in fünfundzwanzig Sekunden."
        [played] = rec.dials
        assert played["warnings_played"] == [["ivr/warning/25"]]
        assert (played["talk_ms"], played["ended_by"]) == (30_000, "limit")
        assert not rec.violations
        [cdr] = await h.cdrs()
        assert (cdr.outcome, cdr.talk_s, cdr.debited_s, cdr.hangup_side) == ("ANSWERED", 30, 30, "limit")
        assert await h.balance(card) == 30
    finally:
        await h.engine.stop(grace_s=1)


async def test_a_two_minute_warning_says_two_minutes(tmp_path: Path) -> None:
    # The issue: --warning 120 played "… endet in einer Minute" two minutes before the end.
    h = await harness(tmp_path, warning_s=120)
    try:
        card, pin = await h.card(minutes=10)
        rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=700_000)])
        assert announced(rec)[1:] == remaining_time(600, "de")
        [dial] = dials(rec)
        assert dial.endswith("L(600000:120000)")
        assert warning_files(rec) == ["ivr/warning/120"]
        assert text_of("ivr/warning/120", "de") == "Ihre Gesprächszeit endet in zwei Minuten."
        assert rec.dials[0]["warnings_played"] == [["ivr/warning/120"]]
        assert not rec.violations
    finally:
        await h.engine.stop(grace_s=1)


async def test_an_unsayable_threshold_warns_at_the_next_length_below(tmp_path: Path) -> None:
    h = await harness(tmp_path, warning_s=100)
    try:
        card, pin = await h.card(minutes=10)
        rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1_000)])
        assert dials(rec)[0].endswith("L(600000:90000)")
        assert warning_files(rec) == ["ivr/warning/90"]
        assert text_of("ivr/warning/90", "en") == "Your call will end in one minute and thirty seconds."
    finally:
        await h.engine.stop(grace_s=1)


async def test_the_one_minute_warning_is_the_catalogue_prompt(h: Harness) -> None:
    card, pin = await h.card(minutes=10)
    rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=700_000)])
    assert dials(rec)[0].endswith("L(600000:60000)")
    assert warning_files(rec) == [sound(Prompt.ONE_MINUTE_WARNING)] == [warning_sound(60)]
    assert rec.dials[0]["warnings_played"] == [[sound(Prompt.ONE_MINUTE_WARNING)]]


async def test_a_call_of_five_seconds_or_less_gets_no_warning(h: Harness) -> None:
    card, pin = await h.card(seconds=5)
    rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=60_000)])
    assert announced(rec)[1:] == remaining_time(5, "de")
    [dial] = dials(rec)
    assert dial.endswith("L(5000)")
    assert warning_files(rec) == []
    assert rec.dials[0]["warnings_played"] == []
    [cdr] = await h.cdrs()
    assert (cdr.talk_s, cdr.hangup_side) == (5, "limit")


async def test_a_block_rule_announces_only_the_talk_its_blocks_allow(tmp_path: Path) -> None:
    # 90 s on the card, billed in whole minutes: this call can talk 60 s, not 90.
    h = await harness(tmp_path, rule=BillingRule(initial_s=60, increment_s=60))
    try:
        card, pin = await h.card(seconds=90)
        rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=600_000)])
        assert announced(rec)[1:] == remaining_time(60, "de")
        assert dials(rec)[0].endswith("L(60000:55000)")
        [cdr] = await h.cdrs()
        assert (cdr.talk_s, cdr.debited_s) == (60, 60)
    finally:
        await h.engine.stop(grace_s=1)


async def test_exhausted_bound_card_hears_no_credit_and_no_pin_prompt(h: Harness) -> None:
    card, pin = await h.card(seconds=30)
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=60_000)])
    assert await h.balance(card) == 0
    rec = await h.call(digits=["", "", ""])   # the caller stays silent
    assert not any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)
    assert rec.prompts_played == [sound(Prompt.NO_CREDIT), sound(Prompt.GOODBYE)]
    assert sound(Prompt.PIN_WRONG) not in rec.prompts_played
    assert not dials(rec)
    assert rec.hung_up_by == "server" and not rec.violations
    cdr = (await h.cdrs())[-1]
    assert (cdr.outcome, cdr.card_id, cdr.debited_s) == ("NO_CREDIT", card.id, 0)
    # what `ivr cdr list --outcome no_credit` runs
    found = await ops.find_cdrs(h.store, ops.CdrFilter(outcomes=(ops.check_outcome("no_credit"),)))
    assert [(c.outcome, c.card_id) for c in found] == [("NO_CREDIT", card.id)]
    assert h.engine.metrics.registry.get_sample_value("ivr_pin_failures_total") == 0


async def test_expired_bound_card_hears_expired_and_no_pin_prompt(h: Harness) -> None:
    card, pin = await h.card()
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1_000)])
    await h.store.set_expiry(card.id, SystemClock().now_ms() - 1)
    rec = await h.call(digits=[""])
    assert not any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)
    assert rec.prompts_played == [sound(Prompt.CARD_EXPIRED), sound(Prompt.GOODBYE)]
    assert (await h.cdrs())[-1].outcome == "CARD_EXPIRED"


async def test_a_project_may_offer_another_cards_pin_and_silence_ends_as_no_credit(h: Harness) -> None:
    await h.store.update_project(h.project.id, changes={"new_pin_when_used_up": 1})
    card, pin = await h.card(seconds=30)
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=60_000)])
    rec = await h.call(digits=["", "", ""])
    assert [words(c)[2] for c in rec.commands if words(c)[:2] == ["GET", "DATA"]] == [sound(Prompt.OTHER_CARD_PIN)]
    assert rec.prompts_played == [sound(Prompt.NO_CREDIT), sound(Prompt.OTHER_CARD_PIN), sound(Prompt.GOODBYE)]
    assert not dials(rec) and not rec.violations
    cdr = (await h.cdrs())[-1]
    assert (cdr.outcome, cdr.card_id) == ("NO_CREDIT", card.id)
    assert h.engine.metrics.registry.get_sample_value("ivr_pin_failures_total") == 0
    assert await h.store.pin_failures(since_ms=0) == []


async def test_a_project_may_offer_another_cards_pin_and_the_line_moves_to_it(h: Harness) -> None:
    await h.store.update_project(h.project.id, changes={"new_pin_when_used_up": 1})
    old, old_pin = await h.card(minutes=1, note="old")
    new, new_pin = await h.card(minutes=5, note="new")
    await h.call(digits=[old_pin + "#"], dials=[dict(talk_ms=90_000)])
    wrong = "1" * 12 if new_pin != "1" * 12 else "2" * 12
    rec = await h.call(digits=[wrong + "#", new_pin + "#"], dials=[dict(talk_ms=1000)])
    # a typed wrong PIN is a wrong PIN; then the usual prompt, and the new card takes the call
    assert [words(c)[2] for c in rec.commands if words(c)[:2] == ["GET", "DATA"]] == [
        sound(Prompt.OTHER_CARD_PIN), sound(Prompt.ENTER_PIN)]
    assert rec.prompts_played[:3] == [sound(Prompt.NO_CREDIT), sound(Prompt.OTHER_CARD_PIN), sound(Prompt.PIN_WRONG)]
    assert (await h.cdrs())[-1].outcome == "ANSWERED"
    assert [b.caller for b in await h.store.bindings(new.id)] == [CALLER]
    assert await h.store.bindings(old.id) == []
    assert await h.balance(new) == 299
