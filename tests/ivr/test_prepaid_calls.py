"""Calls driven over TCP loopback by the fake Asterisk against the real engine."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from asterisk_sim import parse_args
from ivr.clock import SystemClock
from prompts import Prompt, remaining_time, sound

from .conftest import ACCESS, CALLER, Harness

OTHER = "+41797654321"


def words(command: str) -> list[str]:
    return parse_args(command)


def dial_commands(rec) -> list[str]:  # type: ignore[no-untyped-def]
    return [c for c in rec.commands if words(c)[:2] == ["EXEC", "Dial"]]


async def test_first_call_pin_bind_announce_dial_debit_cdr(h: Harness) -> None:
    card, pin = await h.card(minutes=10)
    rec = await h.call(digits=[pin + "#"], dials=[dict(ring_ms=2000, talk_ms=65_000)])

    assert [words(c)[:2] for c in rec.commands] == [
        ["ANSWER"], ["SET", "VARIABLE"], ["GET", "DATA"], ["EXEC", "Playback"], ["SET", "VARIABLE"],
        ["SET", "VARIABLE"], ["EXEC", "Dial"], ["GET", "FULL"], ["SET", "VARIABLE"], ["HANGUP"]]
    assert words(rec.commands[1]) == ["SET", "VARIABLE", "CHANNEL(language)", "de"]
    # the hold on the channel during the Dial (any engine can settle it), cleared once settled
    hold = await h.store._read("SELECT id FROM reservations")
    assert words(rec.commands[4]) == ["SET", "VARIABLE", "IVR_HOLD", (
        f"r{hold[0][0]} limit=600 factor=1000 rule=1 leg=1 zone=internal kind=dial_string type=service"
        " Local/100@prepaid-service/n")]
    assert words(rec.commands[8]) == ["SET", "VARIABLE", "IVR_HOLD", ""]
    assert words(rec.commands[2]) == ["GET", "DATA", sound(Prompt.ENTER_PIN), "7000", "12"]
    played = words(rec.commands[3])[2].split("&")
    assert played == [sound(Prompt.PIN_ACCEPTED), *remaining_time(600, "de")]
    dial = words(dial_commands(rec)[0])[2]
    assert dial.startswith("Local/100@prepaid-service/n,30,gU(ivr-stamp^")
    assert dial.endswith("L(600000:60000)")
    assert rec.hung_up_by == "server" and rec.closed_by == "server"
    assert not rec.violations

    assert await h.balance(card) == 600 - 65
    [cdr] = await h.cdrs()
    assert (cdr.outcome, cdr.talk_s, cdr.debited_s, cdr.hangup_side) == ("ANSWERED", 65, 65, "callee")
    assert (cdr.caller_e164, cdr.card_id, cdr.dialled) == (CALLER, card.id, ACCESS)
    assert cdr.answer_ms is not None and cdr.start_ms <= cdr.end_ms
    bindings = await h.store.bindings(card.id)
    assert [(b.caller, b.source) for b in bindings] == [(CALLER, "ivr")]
    assert (await h.store.card(card.id)).activated_ms is not None
    ledger = await h.store.ledger(card.id)
    assert [(e.kind, e.seconds) for e in ledger] == [("purchase", 600), ("debit", -65)]
    assert "IVR_RESULT" not in rec.variables  # ended with HANGUP: the dialplan runs only `h`


async def test_second_call_from_the_same_line_needs_no_pin(h: Harness) -> None:
    card, pin = await h.card(minutes=10)
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=30_000)])
    rec = await h.call(dials=[dict(talk_ms=10_000)])
    assert not any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)
    assert words(rec.commands[2])[2].split("&") == remaining_time(570, "de")
    assert await h.balance(card) == 600 - 30 - 10


async def test_another_line_is_asked_for_the_pin_again(h: Harness) -> None:
    card, pin = await h.card(minutes=10)
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=5_000)])
    rec = await h.call(caller_id=OTHER, digits=[""] * 3)
    assert sum(words(c)[:2] == ["GET", "DATA"] for c in rec.commands) == 3
    assert not dial_commands(rec)
    cdrs = await h.cdrs()
    assert cdrs[-1].outcome == "PIN_FAILED"


async def test_three_wrong_pins_end_the_call(h: Harness) -> None:
    card, pin = await h.card()
    wrong = "1" * 8 if pin != "1" * 8 else "2" * 8
    rec = await h.call(digits=[wrong + "#", "12#", wrong])
    assert sum(words(c)[:2] == ["GET", "DATA"] for c in rec.commands) == 3
    assert rec.prompts_played[-2:] == [sound(Prompt.PIN_TOO_MANY), sound(Prompt.GOODBYE)]
    assert sound(Prompt.PIN_WRONG) in rec.prompts_played
    assert not dial_commands(rec)
    [cdr] = await h.cdrs()
    assert (cdr.outcome, cdr.debited_s, cdr.card_id) == ("PIN_FAILED", 0, None)
    assert await h.store.bindings(card.id) == []
    assert h.engine.metrics.registry.get_sample_value("ivr_pin_failures_total") == 3


@pytest.mark.parametrize("callerid", ["unknown", "anonymous"])
async def test_withheld_caller_gives_the_pin_every_time_and_is_never_bound(h: Harness, callerid: str) -> None:
    card, pin = await h.card()
    for _ in range(2):
        rec = await h.call(caller_id=callerid, callingpres=35, digits=[pin + "#"], dials=[dict(talk_ms=3_000)])
        assert any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)
    assert await h.store.bindings(card.id) == []
    assert (await h.store.card(card.id)).activated_ms is not None
    assert await h.balance(card) == 600 - 6


async def test_exhausted_card_hears_why_and_is_not_connected(h: Harness) -> None:
    card, pin = await h.card(minutes=1)
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=120_000)])
    assert await h.balance(card) == 0
    rec = await h.call(digits=[pin + "#"])
    assert not dial_commands(rec)
    assert sound(Prompt.NO_CREDIT) in rec.prompts_played
    assert (await h.cdrs())[-1].outcome == "NO_CREDIT"


async def test_card_running_out_mid_call_is_cut_by_the_limit(h: Harness) -> None:
    card, pin = await h.card(seconds=100)
    rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=500_000)])
    assert words(dial_commands(rec)[0])[2].endswith("L(100000:60000)")
    assert rec.dials[0]["talk_ms"] <= 100_000
    assert await h.balance(card) == 0
    [cdr] = await h.cdrs()
    assert (cdr.talk_s, cdr.debited_s, cdr.hangup_side) == (100, 100, "limit")


@pytest.mark.parametrize("outcome,expected", [("busy", "BUSY"), ("noanswer", "NO_ANSWER"),
                                              ("congestion", "FAILED"), ("chanunavail", "FAILED")])
async def test_unanswered_dial_debits_nothing(h: Harness, outcome: str, expected: str) -> None:
    card, pin = await h.card()
    ring = 40_000 if outcome == "noanswer" else 1_000
    rec = await h.call(digits=[pin + "#"], dials=[dict(outcome=outcome, ring_ms=ring)])
    assert len(dial_commands(rec)) == 1
    assert await h.balance(card) == 600
    [cdr] = await h.cdrs()
    assert (cdr.outcome, cdr.debited_s, cdr.talk_s) == (expected, 0, 0)
    assert (await h.store.card(card.id)).reserved_s == 0


async def test_busy_goes_to_the_fallback_and_is_debited_there(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import make_harness

    h = await make_harness(tmp_path, fallback="Local/200@prepaid-service/n")
    try:
        card, pin = await h.card()
        rec = await h.call(digits=[pin + "#"], dials=[dict(outcome="busy"), dict(talk_ms=42_000)])
        assert [words(d)[2].split(",")[0] for d in dial_commands(rec)] == [
            "Local/100@prepaid-service/n", "Local/200@prepaid-service/n"]
        assert await h.balance(card) == 600 - 42
        [cdr] = await h.cdrs()
        assert (cdr.outcome, cdr.destination, cdr.debited_s) == ("ANSWERED", "Local/200@prepaid-service/n", 42)
    finally:
        await h.engine.stop(grace_s=1)


@pytest.mark.parametrize("pattern", [CALLER, "0791234567", "079123456x", "+4179.", "0041791234567"])
async def test_blocked_caller_hears_a_message(h: Harness, pattern: str) -> None:
    card, pin = await h.card()
    await h.store.add_blocked(added_by="test", project_id=h.project.id, pattern=pattern, direction="inbound", reason="",
                                now_ms=SystemClock().now_ms())
    rec = await h.call(digits=[pin + "#"])
    assert not any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)
    assert rec.prompts_played == [sound(Prompt.NUMBER_BLOCKED), sound(Prompt.GOODBYE)]
    assert (await h.cdrs())[-1].outcome == "BLOCKED_CALLER"
    # national caller-ID form is blocked as well
    rec = await h.call(caller_id="0791234567")
    assert (await h.cdrs())[-1].outcome == "BLOCKED_CALLER"


async def test_global_block_and_other_numbers_pass(h: Harness) -> None:
    card, pin = await h.card()
    await h.store.add_blocked(added_by="test", project_id=None, pattern="0900.", direction="inbound", reason="premium",
                                now_ms=SystemClock().now_ms())
    await h.call(caller_id="+41900123456")
    assert (await h.cdrs())[-1].outcome == "BLOCKED_CALLER"
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    assert (await h.cdrs())[-1].outcome == "ANSWERED"


async def test_unknown_access_number(h: Harness) -> None:
    rec = await h.call(extension="+41449999999")
    assert rec.prompts_played == [sound(Prompt.NOT_IN_SERVICE), sound(Prompt.GOODBYE)]
    [cdr] = await h.cdrs()
    assert (cdr.outcome, cdr.project_id) == ("UNKNOWN_NUMBER", None)


async def test_access_number_in_national_form_and_as_argument(h: Harness) -> None:
    card, pin = await h.card()
    await h.call(extension="0441234567", digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    await h.call(extension="s", args=("0041441234567",), dials=[dict(talk_ms=1000)])
    assert [c.outcome for c in await h.cdrs()] == ["ANSWERED", "ANSWERED"]


async def test_blocked_card(h: Harness) -> None:
    card, pin = await h.card()
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    await h.store.set_blocked(card.id, True)
    rec = await h.call()
    assert sound(Prompt.CARD_BLOCKED) in rec.prompts_played
    assert (await h.cdrs())[-1].outcome == "CARD_BLOCKED"


async def test_expired_card(h: Harness) -> None:
    card, pin = await h.card()
    await h.store.set_expiry(card.id, 1)  # long past
    rec = await h.call(digits=[pin + "#"])
    assert sound(Prompt.CARD_EXPIRED) in rec.prompts_played
    assert (await h.cdrs())[-1].outcome == "CARD_EXPIRED"


async def test_caller_hangs_up_during_pin_entry(h: Harness) -> None:
    card, pin = await h.card()
    rec = await h.call(digits=[pin + "#"], hangup_at_ms=800)
    assert rec.hung_up_by == "caller" and rec.closed_by == "server"
    [cdr] = await h.cdrs()
    assert (cdr.outcome, cdr.hangup_side, cdr.debited_s) == ("ABANDONED", "caller", 0)
    assert await h.store.bindings(card.id) == []


async def test_caller_hangs_up_during_the_announcement(h: Harness) -> None:
    card, pin = await h.card()
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    rec = await h.call(hangup_at_ms=1000)  # during Playback of the remaining time
    assert not dial_commands(rec)
    c = await h.store.card(card.id)
    assert (c.balance_s, c.reserved_s, c.active_calls) == (599, 0, 0)
    assert (await h.cdrs())[-1].outcome == "ABANDONED"


async def test_caller_hangs_up_during_the_dial(h: Harness) -> None:
    card, pin = await h.card()
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    # connect 0, ANSWER .5 s, playback of the announcement, ring 2 s, talk …
    rec = await h.call(dials=[dict(ring_ms=2000, talk_ms=300_000)], hangup_at_ms=60_000)
    talk = rec.dials[0]["talk_ms"]
    assert 0 < talk < 60_000
    cdr = (await h.cdrs())[-1]
    assert (cdr.outcome, cdr.hangup_side) == ("ANSWERED", "caller")
    assert cdr.debited_s == -(-talk // 1000)
    assert await h.balance(card) == 599 - cdr.debited_s
    assert rec.closed_by == "server"


async def test_card_in_use(h: Harness) -> None:
    card, pin = await h.card()
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    first = asyncio.create_task(h.call(dials=[dict(talk_ms=2000)], time_scale=0.2))
    await asyncio.sleep(0.3)
    second = await h.call(time_scale=0.0)
    await first
    assert sound(Prompt.CARD_IN_USE) in second.prompts_played
    outcomes = sorted(c.outcome for c in (await h.cdrs())[1:])
    assert outcomes == ["ANSWERED", "CARD_IN_USE"]


async def test_exhausted_bound_line_hears_no_credit_and_a_new_card_is_bound_by_the_operator(h: Harness) -> None:
    from ivr import operations as ops

    old, old_pin = await h.card(minutes=1, note="old")
    new, new_pin = await h.card(minutes=5, note="new")
    await h.call(digits=[old_pin + "#"], dials=[dict(talk_ms=90_000)])
    assert await h.balance(old) == 0
    rec = await h.call(digits=[new_pin + "#"], dials=[dict(talk_ms=1000)])
    # issue 12: the bound line is told why and the call ends; no PIN is asked for
    assert rec.prompts_played == [sound(Prompt.NO_CREDIT), sound(Prompt.GOODBYE)]
    assert not dial_commands(rec)
    assert (await h.cdrs())[-1].outcome == "NO_CREDIT"
    # the operator moves the number to the new card; the next call goes through on it
    await ops.bind(h.store, card=new, number=CALLER, now_ms=SystemClock().now_ms())
    await h.call(dials=[dict(talk_ms=1000)])
    assert [b.caller for b in await h.store.bindings(new.id)] == [CALLER]
    assert await h.store.bindings(old.id) == []
    assert await h.balance(new) == 299


async def test_binding_limit_refuses_a_new_line_and_keeps_the_owners(h: Harness) -> None:
    card, pin = await h.card()
    numbers = ["+41790000001", "+41790000002", "+41790000003", "+41790000004"]
    for number in numbers:
        await h.call(caller_id=number, digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    assert [b.caller for b in await h.store.bindings(card.id)] == numbers[:3]
    assert (await h.cdrs())[-1].outcome == "ANSWERED"  # the fourth line may still call with the PIN
    history = await h.store.binding_history(card.id)
    assert [(e.caller, e.action, e.source) for e in history] == [
        (n, "bind", "ivr") for n in numbers[:3]] + [(numbers[3], "refused", "ivr")]
    rec = await h.call(caller_id=numbers[0], dials=[dict(talk_ms=1000)])
    assert not any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)


async def test_binding_limit_drops_the_oldest_number_when_the_project_chose_eviction(h: Harness) -> None:
    await h.store.update_project(h.project.id, changes={"evict_oldest_binding": 1})
    card, pin = await h.card()
    numbers = ["+41790000001", "+41790000002", "+41790000003", "+41790000004"]
    for number in numbers:
        await h.call(caller_id=number, digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    assert [b.caller for b in await h.store.bindings(card.id)] == numbers[1:]
    history = await h.store.binding_history(card.id)
    assert [(e.caller, e.action, e.source) for e in history][-2:] == [
        (numbers[0], "unbind", "evicted"), (numbers[3], "bind", "ivr")]
    rec = await h.call(caller_id=numbers[0], digits=[""] * 3)
    assert any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)


async def test_pin_brute_force_is_throttled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import make_harness

    h = await make_harness(tmp_path)
    try:
        card, pin = await h.card()
        for _ in range(4):
            await h.call(digits=["00000000#"] * 3 if pin != "00000000" else ["11111111#"] * 3)
        # 10 failures in the window (the 4th call's second prompt was refused): even the
        # right PIN is not asked for any more
        assert [c.outcome for c in await h.cdrs()] == ["PIN_FAILED"] * 3 + ["PIN_THROTTLED"]
        rec = await h.call(digits=[pin + "#"])
        assert not any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)
        assert (await h.cdrs())[-1].outcome == "PIN_THROTTLED"
        # another line is not affected
        await h.call(caller_id=OTHER, digits=[pin + "#"], dials=[dict(talk_ms=1000)])
        assert (await h.cdrs())[-1].outcome == "ANSWERED"
    finally:
        await h.engine.stop(grace_s=1)


async def test_projects_own_welcome_and_prompts_are_played(tmp_path, h: Harness) -> None:  # type: ignore[no-untyped-def]
    import wave

    from prompts import import_recording

    sounds = tmp_path / "sounds"
    src = tmp_path / "hallo.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x10\x20" * 16000)
    welcome = import_recording(src, "test1", "welcome", "de", sounds_dir=sounds)
    goodbye = import_recording(src, "test1", "goodbye", "de", sounds_dir=sounds)
    object.__setattr__(h.engine, "settings", h.engine.settings.__class__(
        **{**h.engine.settings.__dict__, "sounds_dir": str(sounds)}))
    card, pin = await h.card()
    rec = await h.call(digits=[pin + "#"], dials=[dict(outcome="busy")])
    assert rec.prompts_played[0] == welcome
    assert rec.prompts_played[-1] == goodbye
    assert sound(Prompt.ENTER_PIN) in rec.prompts_played


async def test_locked_account_with_suspended_calls_refuses_new_calls(h: Harness) -> None:
    card, pin = await h.card(minutes=10)  # 5.00 CHF owed
    await h.store.update_account_settings({"info_limit_cents": 100, "lock_limit_cents": 200,
                                           "suspend_calls": True})
    with structlog.testing.capture_logs() as logs:
        await h.engine.refresh_account()
    assert [e["level"] for e in logs if e["event"] == "account_state"] == ["locked"]
    rec = await h.call(digits=[pin + "#"])
    assert rec.prompts_played == [sound(Prompt.SERVICE_SUSPENDED), sound(Prompt.GOODBYE)]
    assert (await h.cdrs())[-1].outcome == "SUSPENDED"
    await h.store.add_payment(amount_cents=500, currency="CHF", reference="bank", entered_by="test",
                              now_ms=SystemClock().now_ms())
    await h.engine.refresh_account()
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    assert (await h.cdrs())[-1].outcome == "ANSWERED"


async def test_outbound_block_stops_forwarding_to_a_blocked_service(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import make_harness

    h = await make_harness(tmp_path, service="PJSIP/0900123456@trunk", fallback="PJSIP/0441110000@trunk")
    try:
        card, pin = await h.card()
        await h.store.add_blocked(added_by="test", project_id=None, pattern="0900.", direction="outbound",
                                  reason="premium", now_ms=SystemClock().now_ms())
        rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=3000)])
        assert [words(d)[2].split(",")[0] for d in dial_commands(rec)] == ["PJSIP/0441110000@trunk"]
        assert await h.balance(card) == 597
        await h.store.add_blocked(added_by="test", project_id=h.project.id, pattern="044111000x", direction="outbound",
                                    reason="", now_ms=SystemClock().now_ms())
        rec = await h.call(dials=[dict(talk_ms=3000)])
        assert not dial_commands(rec)
        assert (await h.cdrs())[-1].outcome == "BLOCKED_DESTINATION"
        assert (await h.store.card(card.id)).reserved_s == 0
    finally:
        await h.engine.stop(grace_s=1)


async def test_pin_guessing_from_rotating_caller_ids_is_capped_per_project(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from .conftest import make_harness

    h = await make_harness(tmp_path)
    try:
        h.engine.settings = replace(h.engine.settings, pin_throttle_project_failures=6)
        card, pin = await h.card()
        wrong = "00000000" if pin != "00000000" else "11111111"
        await h.call(caller_id="+41790000011", digits=[wrong + "#"] * 3)
        await h.call(caller_id="+41790000012", digits=[wrong + "#"] * 3)
        rec = await h.call(caller_id="+41790000013", digits=[pin + "#"])  # a new line: refused too
        assert not any(words(c)[:2] == ["GET", "DATA"] for c in rec.commands)
        assert (await h.cdrs())[-1].outcome == "PIN_THROTTLED"
        await h.store.bind(project_id=h.project.id, caller=CALLER, card_id=card.id,
                           now_ms=SystemClock().now_ms(), source="operator", max_bound=3)
        await h.call(dials=[dict(talk_ms=1000)])  # bound lines go on
        assert (await h.cdrs())[-1].outcome == "ANSWERED"
    finally:
        await h.engine.stop(grace_s=1)
