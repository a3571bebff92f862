"""PIN guessing as an attacker would do it, over FastAGI against the real engine (issue 9).

"Guesses evaluated" is what the attacker got: wrong PINs the engine looked up
(``ivr_pin_failures_total``), never more than the caps however many calls run at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from asterisk_sim import parse_args
from prompts import Prompt, sound

from .conftest import CALLER, Harness, make_harness

WRONG = "000000000000"


def asked(rec: Any) -> int:
    return sum(parse_args(c)[:2] == ["GET", "DATA"] for c in rec.commands)


def evaluated(h: Harness) -> int:
    return int(h.engine.metrics.registry.get_sample_value("ivr_pin_failures_total") or 0)


def throttled(h: Harness, reason: str) -> int:
    return int(h.engine.metrics.registry.get_sample_value("ivr_pin_throttled_total", {"reason": reason}) or 0)


async def burst(h: Harness, callers: list[str], digits: list[str]) -> list[Any]:
    """The calls at once; returns once the engine has wrapped every one up (the fake is
    done when the connection closes, the engine's last store writes — the CDR, a pending
    PIN attempt deleted — may still be running on a loaded machine)."""
    records = list(await asyncio.gather(*(h.call(caller_id=c, digits=digits, idle_timeout_s=60)
                                          for c in callers)))
    for _ in range(1200):
        if not h.engine.live and h.engine.server.active_calls == 0:
            return records
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(h.engine.live)} calls still live 60 s after the fake hung up")


async def test_simultaneous_calls_from_one_line_get_no_more_guesses_than_the_line_cap(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"pin_throttle_failures": 10, "pin_entry_max_calls": 1000})
    try:
        await h.card()
        await burst(h, [CALLER] * 60, [WRONG + "#"] * 3)
        assert evaluated(h) <= 10
        assert evaluated(h) == 10  # the cap, not less: the line was not refused early either
        outcomes = [c.outcome for c in await h.cdrs()]
        assert outcomes.count("PIN_THROTTLED") >= 60 - 10
        assert throttled(h, "line") == outcomes.count("PIN_THROTTLED")
        assert [s.failures for s in await h.store.pin_failures(since_ms=0)] == [10]
    finally:
        await h.engine.stop(grace_s=5)


async def test_simultaneous_calls_from_rotating_lines_get_no_more_than_the_project_cap(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"pin_throttle_project_failures": 25, "pin_entry_max_calls": 1000})
    try:
        await h.card()
        await burst(h, [f"+4179{i:07d}" for i in range(80)], [WRONG + "#"] * 3)
        assert evaluated(h) == 25
        assert throttled(h, "project") >= 80 - 25
    finally:
        await h.engine.stop(grace_s=5)


async def test_silent_calls_are_no_guesses_and_lock_nobody_out(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"pin_throttle_project_failures": 5, "pin_throttle_failures": 2})
    try:
        card, pin = await h.card()
        await burst(h, [f"+4179{i:07d}" for i in range(50)] + [CALLER] * 50, [""] * 3)
        assert evaluated(h) == 0
        assert await h.store.pin_failures(since_ms=0) == []
        rec = await h.call(caller_id="+41795550000", digits=[pin + "#"], dials=[dict(talk_ms=1000)])
        assert (await h.cdrs())[-1].outcome == "ANSWERED" and asked(rec) == 1
        rec = await h.call(caller_id=CALLER, digits=["", pin + "#"], dials=[dict(talk_ms=1000)])
        assert (await h.cdrs())[-1].outcome == "ANSWERED" and asked(rec) == 2
        assert (await h.store.card(card.id)).balance_s == 598
    finally:
        await h.engine.stop(grace_s=5)


async def test_withheld_callers_are_not_locked_out_as_a_group(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"pin_throttle_failures": 2})
    try:
        card, pin = await h.card()
        for _ in range(6):  # 18 wrong PINs from withheld numbers: far over the per-line cap of 2
            await h.call(caller_id="anonymous", callingpres=35, digits=[WRONG + "#"] * 3)
        assert evaluated(h) == 18
        await h.call(caller_id="anonymous", callingpres=35, digits=[pin + "#"], dials=[dict(talk_ms=1000)])
        assert (await h.cdrs())[-1].outcome == "ANSWERED"
        # a listed line with 2 wrong PINs is capped as before
        await h.call(caller_id=CALLER, digits=[WRONG + "#"] * 3)
        assert (await h.cdrs())[-1].outcome == "PIN_THROTTLED"
    finally:
        await h.engine.stop(grace_s=5)


async def test_withheld_guessing_is_still_bounded_by_the_project_cap(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"pin_throttle_project_failures": 7, "pin_entry_max_calls": 1000})
    try:
        await h.card()
        await asyncio.gather(*(h.call(caller_id="anonymous", callingpres=35, digits=[WRONG + "#"] * 3,
                                      idle_timeout_s=60) for _ in range(20)))
        assert evaluated(h) == 7
    finally:
        await h.engine.stop(grace_s=5)


async def test_callers_at_the_prompt_at_once_are_capped_per_project(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"pin_entry_max_calls": 3})
    try:
        await h.card()
        # each prompt takes 0.3 s of real time: six callers arrive while three are at it
        recs = await asyncio.gather(*(h.call(caller_id=f"+4179{i:07d}", digits=[""], prompt_ms=300,
                                             time_scale=1.0, idle_timeout_s=60) for i in range(6)))
        outcomes = [c.outcome for c in await h.cdrs()]
        assert outcomes.count("PIN_THROTTLED") >= 1
        assert throttled(h, "busy") == outcomes.count("PIN_THROTTLED")
        refused = [r for r in recs if asked(r) == 0]
        assert refused and all(sound(Prompt.SERVICE_UNAVAILABLE) in r.prompts_played for r in refused)
        assert evaluated(h) == 0
        # the attempts ended: nobody is at the prompt any more, the next caller is asked
        assert asked(await h.call(caller_id=CALLER, digits=[""])) >= 1
    finally:
        await h.engine.stop(grace_s=5)


async def test_the_delay_after_a_wrong_pin_doubles_with_the_lines_wrong_pins(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"pin_delay_ms": 50, "pin_delay_max_ms": 300})
    try:
        await h.card()
        with structlog.testing.capture_logs() as logs:
            await h.call(digits=[WRONG + "#"] * 3)
            await h.call(digits=[WRONG + "#", "", WRONG + "#"])
        delays = [e["delay_ms"] for e in logs if e["event"] == "pin_delay"]
        # call 1: after wrong PINs 1 and 2; call 2: after wrong PIN 4 (the empty entry waits nothing)
        assert delays == [50, 100, 300]
    finally:
        await h.engine.stop(grace_s=5)


async def test_a_caller_hanging_up_at_the_prompt_made_no_guess(h: Harness) -> None:
    await h.card()
    await h.call(digits=[WRONG + "#"], hangup_at_ms=100)
    assert evaluated(h) == 0
    assert await h.store.pin_failures(since_ms=0) == []


async def test_a_guessed_pin_does_not_evict_the_owner(h: Harness) -> None:
    card, pin = await h.card()
    owners = ["+41790000001", "+41790000002", "+41790000003"]
    for n in owners:
        await h.store.bind(project_id=h.project.id, caller=n, card_id=card.id, now_ms=1, source="operator",
                           max_bound=3, actor="test")
    for i in range(3):
        await h.call(caller_id=f"+4178000000{i}", digits=[pin + "#"], dials=[dict(talk_ms=1000)])
    assert [b.caller for b in await h.store.bindings(card.id)] == owners
    refused = [e for e in await h.store.binding_history(card.id) if e.action == "refused"]
    assert [e.caller for e in refused] == [f"+4178000000{i}" for i in range(3)]
