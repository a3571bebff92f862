"""The talk time from the channel's stamps, the debit of a settlement, stale holds —
and, on a real SQLite file, that whatever order the paths arrive in (the engine's own
settle, the dialplan's settle route twice, a late replay), a hold is debited once,
one CDR is written and the card never goes below zero."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating.billing import BillingRule
from rating.models import Cdr, Grant, HoldCall
from rating.settlement import DialFacts, is_stale, parse_stamp, settlement, talk_time
from rating.store.sqlite import SqliteStore


def test_stamps_give_the_talk_exactly() -> None:
    # e1: the callee answered at .608 and (stamped by its hangup handler) hung up 6 s later
    facts = DialFacts.parse("ANSWER", "6505", "1796193853.608", "1796193859.609", "1796193859.610573")
    assert talk_time(facts).ms == 6001 and talk_time(facts).source == "stamps"


def test_decimal_not_float() -> None:
    # float(1795438887.464) - float(1795438882.011) is 5.452999830245972
    facts = DialFacts.parse("ANSWER", "", "1795438882.011", "1795438887.464", "")
    assert talk_time(facts).ms == 5453


def test_answeredtime_formula_without_end_stamp_b4k() -> None:
    facts = DialFacts.parse("ANSWER", "9454", "1795438887.464", "", "1795438882.011870")
    assert talk_time(facts).ms == 4002 and talk_time(facts).source == "answeredtime"


def test_after_bridge_cdr_answer_is_not_trusted_e1() -> None:
    # CDR(answer,u) later than the callee's answer: the after-bridge CDR's. Bill the whole
    # ANSWEREDTIME_MS (the caller pays the IVR's half second, the operator loses nothing).
    facts = DialFacts.parse("ANSWER", "6505", "1796193853.608", "", "1796193859.610573")
    assert talk_time(facts).ms == 6505 and not talk_time(facts).exact


@pytest.mark.parametrize("status", ["BUSY", "NOANSWER", "CANCEL", "CHANUNAVAIL", ""])
def test_unanswered_is_zero(status: str) -> None:
    assert talk_time(DialFacts.parse(status, "", "", "", "")).ms == 0


@pytest.mark.parametrize("text", ["", "  ", "abc", "NaN", "inf", None])
def test_bad_stamps_are_none(text: str | None) -> None:
    assert parse_stamp(text) is None


def test_settlement_caps_talk_at_limit_and_debit_at_hold() -> None:
    assert settlement(BillingRule(), talk_ms=60_004, max_talk_s=60, reserved_s=60).talk_s == 60
    blocks = BillingRule(connect_s=10, initial_s=60, increment_s=60)
    s = settlement(blocks, talk_ms=61_000, max_talk_s=110, reserved_s=100)
    assert (s.talk_s, s.debit_s) == (61, 100)  # rule says 130, the hold is 100


def test_stale() -> None:
    assert is_stale(1000, 1001) and not is_stale(1000, 1000)


@given(answered=st.integers(0, 10**12), talk=st.integers(0, 10**8), whole_extra=st.integers(0, 10**6),
       ivr_before=st.integers(0, 10**6))
def test_talk_never_negative_and_stamps_exact(answered: int, talk: int, whole_extra: int, ivr_before: int) -> None:
    a = Decimal(answered) / 1000
    e = Decimal(answered + talk) / 1000
    facts = DialFacts(status="ANSWER", answered_time_ms=talk + ivr_before + whole_extra, callee_answered=a,
                      callee_ended=e, ivr_answered=a - Decimal(ivr_before) / 1000)
    assert talk_time(facts).ms == talk
    without_end = DialFacts(status="ANSWER", answered_time_ms=talk + ivr_before, callee_answered=a,
                            ivr_answered=a - Decimal(ivr_before) / 1000)
    assert talk_time(without_end).ms == talk


# --- the store: every path, any order -------------------------------------------

NOW = 1_796_193_853_000


async def _store_with_hold(path: Path, balance_s: int) -> tuple[SqliteStore, int, int]:
    store = SqliteStore(path)
    await store.open()
    project = await store.create_project(
        name="p", numbers=["+41441234567"], service="Local/100@svc/n", fallback=None, ring_timeout_s=30,
        language="en", region="CH", price_per_minute_cents=50, currency="CHF", rule=BillingRule(),
        warning_s=0, pin_length=8, max_bound_numbers=3, max_simultaneous_calls=1, card_validity_days=None,
        now_ms=NOW)
    card = await store.create_card(project_id=project.id, note="", pin_hash="h", seconds=balance_s,
                                   price_cents=0, now_ms=NOW, expires_ms=None)
    grant = await store.reserve(card_id=card.id, uniqueid="u.1", rule=BillingRule(), max_calls=1, hold_s=60,
                                now_ms=NOW, call=HoldCall(caller_raw="+41790000001", caller_e164="+41790000001",
                                                          dialled="+41441234567", start_ms=NOW - 5000))
    return store, card.id, grant.reservation_id


def _cdr(outcome: str = "ANSWERED") -> Cdr:
    return Cdr(uniqueid="u.1", project_id=None, card_id=None, caller_raw="", caller_e164=None, dialled="",
               destination="Local/100@svc/n", start_ms=0, answer_ms=None, end_ms=NOW, talk_s=0, debited_s=0,
               outcome=outcome, hangup_side="callee")


PATHS = st.sampled_from(["engine", "after-agi", "hangup-handler", "replay", "foreign"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(PATHS, min_size=1, max_size=6), talk_ms=st.integers(0, 400_000),
       balance_s=st.integers(1, 300))
def test_any_interleaving_debits_once_and_never_below_zero(tmp_path_factory: pytest.TempPathFactory,
                                                            order: list[str], talk_ms: int, balance_s: int) -> None:
    async def run() -> None:
        path = tmp_path_factory.mktemp("db") / "ivr.sqlite3"
        store, card_id, hold_id = await _store_with_hold(path, balance_s)
        try:
            card = await store.card(card_id)
            reserved = card.reserved_s
            grant = Grant(reservation_id=hold_id, card_id=card_id, reserved_s=reserved,
                          max_talk_s=BillingRule().max_talk(balance_s), available_before_s=balance_s)
            expected = settlement(BillingRule(), talk_ms=talk_ms, max_talk_s=grant.max_talk_s, reserved_s=reserved)
            for step in order:
                if step == "engine":  # the engine's own CDR names the card it served
                    own = _cdr()
                    own.card_id = card_id
                    await store.settle_and_record(grant, debit_s=expected.debit_s, cdr=own, now_ms=NOW)
                elif step == "foreign":  # a hold id of another call: nothing happens
                    other = _cdr()
                    other.uniqueid = "u.other"
                    r = await store.settle_hold(hold_id, uniqueid="u.other", talk_ms=talk_ms, cdr=other, now_ms=NOW)
                    assert r.state == "unknown"
                else:
                    await store.settle_hold(hold_id, uniqueid="u.1", talk_ms=talk_ms, cdr=_cdr(), now_ms=NOW)
            after = await store.card(card_id)
            cdrs = await store.cdrs(card_id=card_id)
            ledger = [e for e in await store.ledger(card_id) if e.kind == "debit"]
            if any(step != "foreign" for step in order):
                assert after.balance_s == balance_s - expected.debit_s >= 0
                assert (after.reserved_s, after.active_calls) == (0, 0)
                assert len(cdrs) == 1 and cdrs[0].debited_s == expected.debit_s
                assert sum(-e.seconds for e in ledger) == expected.debit_s
                assert len(ledger) == (1 if expected.debit_s else 0)
            else:
                assert after.balance_s == balance_s and after.active_calls == 1 and cdrs == []
        finally:
            await store.close()

    asyncio.run(run())


async def test_settle_hold_completes_the_cdr_from_the_hold(tmp_path: Path) -> None:
    store, card_id, hold_id = await _store_with_hold(tmp_path / "ivr.sqlite3", 600)
    try:
        r = await store.settle_hold(hold_id, uniqueid="u.1", talk_ms=6001, cdr=_cdr(), now_ms=NOW)
        assert (r.state, r.talk_s, r.debited_s, r.card_id) == ("settled", 7, 7, card_id)
        (cdr,) = await store.cdrs()
        assert (cdr.card_id, cdr.caller_raw, cdr.caller_e164, cdr.dialled, cdr.start_ms, cdr.talk_s) == (
            card_id, "+41790000001", "+41790000001", "+41441234567", NOW - 5000, 7)
        again = await store.settle_hold(hold_id, uniqueid="u.1", talk_ms=9000, cdr=_cdr(), now_ms=NOW)
        assert again.state == "already_settled" and len(await store.cdrs()) == 1
        unknown = await store.settle_hold(hold_id + 99, uniqueid="u.1", talk_ms=1, cdr=_cdr(), now_ms=NOW)
        assert unknown.state == "unknown"
        assert (await store.card(card_id)).balance_s == 593
    finally:
        await store.close()
