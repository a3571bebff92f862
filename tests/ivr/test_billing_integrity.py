"""No overdraft, whatever the talk times and the timing of simultaneous calls;
no PIN in the logs; a fault leaves one log line with the uniqueid and the
dialplan in charge."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.clock import SystemClock
from prompts import Prompt, sound

from .conftest import CALLER, Harness, make_harness


async def _two_calls(max_calls: int, talks: tuple[int, int], offsets: tuple[int, int],
                     bound: bool) -> tuple[int, list[int], int]:
    with tempfile.TemporaryDirectory() as tmp:
        h = await make_harness(Path(tmp), max_simultaneous_calls=max_calls, warning_s=0)
        try:
            card, pin = await h.card(seconds=100)
            if bound:
                for n in ("+41790000001", "+41790000002"):
                    await h.store.bind(project_id=h.project.id, caller=n, card_id=card.id,
                                       now_ms=SystemClock().now_ms(), source="operator", max_bound=3)

            async def one(number: str, talk_ms: int, offset_ms: int) -> object:
                await asyncio.sleep(offset_ms / 1000)
                return await h.call(caller_id=number, digits=[pin + "#"], time_scale=0.001,
                                    dials=[dict(ring_ms=1000, talk_ms=talk_ms)])

            await asyncio.gather(one("+41790000001", talks[0], offsets[0]),
                                 one("+41790000002", talks[1], offsets[1]))
            after = await h.store.card(card.id)
            debits = [c.debited_s for c in await h.cdrs()]
            ledger_sum = sum(e.seconds for e in await h.store.ledger(card.id))
            assert after.reserved_s == 0 and after.active_calls == 0
            assert ledger_sum == after.balance_s  # the balance is derivable from the ledger
            return after.balance_s, debits, ledger_sum
        finally:
            await h.engine.stop(grace_s=2)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_calls=st.sampled_from([1, 2]),
       talks=st.tuples(st.integers(0, 150_000), st.integers(0, 150_000)),
       offsets=st.tuples(st.integers(0, 15), st.integers(0, 15)),
       bound=st.booleans())
def test_two_simultaneous_calls_never_debit_more_than_the_card_holds(
        max_calls: int, talks: tuple[int, int], offsets: tuple[int, int], bound: bool) -> None:
    balance, debits, _ = asyncio.run(_two_calls(max_calls, talks, offsets, bound))
    assert sum(debits) <= 100
    assert balance == 100 - sum(debits) >= 0


async def test_no_pin_in_any_log_line(h: Harness) -> None:
    card, pin = await h.card()
    with structlog.testing.capture_logs() as logs:
        await h.call(digits=["99999999#", pin + "#"], dials=[dict(talk_ms=1000)])
    assert logs, "the call logged nothing"
    assert all(pin not in repr(event) for event in logs)
    finished = [e for e in logs if e["event"] == "call_finished"]
    assert len(finished) == 1
    assert finished[0]["outcome"] == "ANSWERED" and finished[0]["debited_s"] == 1


async def test_a_fault_logs_once_with_the_uniqueid_and_hands_back_to_the_dialplan(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    card, pin = await h.card()

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(h.store, "reserve", broken)
    with structlog.testing.capture_logs() as logs:
        rec = await h.call(digits=[pin + "#"], uniqueid="1795438347.4242")
    faults = [e for e in logs if e["event"] == "call_fault"]
    assert len(faults) == 1 and faults[0]["log_level"] == "error"
    assert rec.variables.get("IVR_RESULT") == "error"
    assert rec.hung_up_by is None  # the dialplan plays "service unavailable"
    assert rec.closed_by == "server"
    [cdr] = await h.cdrs()
    assert (cdr.uniqueid, cdr.outcome) == ("1795438347.4242", "ERROR")


async def test_missing_stamp_context_bills_the_safe_side_and_says_so(h: Harness) -> None:
    card, pin = await h.card()
    with structlog.testing.capture_logs() as logs:
        await h.call(digits=[pin + "#"], dials=[dict(talk_ms=20_000)], stamp_context=False)
    assert any(e["event"] == "talk_stamp_missing" for e in logs)
    [cdr] = await h.cdrs()
    assert cdr.talk_s > 20  # includes the IVR's own time, never less than the talk
    assert await h.balance(card) == 600 - cdr.debited_s


async def test_card_in_use_prompt_and_no_reservation_leak(h: Harness) -> None:
    card, pin = await h.card()
    await h.store.bind(project_id=h.project.id, caller=CALLER, card_id=card.id,
                       now_ms=SystemClock().now_ms(), source="operator", max_bound=3)
    grant = await h.store.reserve(card_id=card.id, uniqueid="other", rule=h.project.rule, max_calls=1,
                                  hold_s=60, now_ms=SystemClock().now_ms())
    rec = await h.call()
    assert rec.prompts_played == [sound(Prompt.CARD_IN_USE), sound(Prompt.GOODBYE)]
    await h.store.settle(grant, debit_s=0, uniqueid="other", now_ms=SystemClock().now_ms())
    c = await h.store.card(card.id)
    assert (c.reserved_s, c.active_calls, c.balance_s) == (0, 0, 600)


async def test_stale_reservation_of_a_crashed_engine_expires(h: Harness) -> None:
    card, pin = await h.card()
    long_ago = SystemClock().now_ms() - 10 * 3600_000
    await h.store.reserve(card_id=card.id, uniqueid="crashed", rule=h.project.rule, max_calls=1,
                          hold_s=60, now_ms=long_ago)
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=5000)])
    c = await h.store.card(card.id)
    assert (c.balance_s, c.reserved_s, c.active_calls) == (595, 0, 0)
