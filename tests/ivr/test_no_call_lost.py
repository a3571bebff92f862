"""No call lost (issue 8): real engine processes, real sockets, real SQLite files.

The fake Asterisk plays asterisk-conf's dialplan after AGI(): the settle route when
AGI() returns without a result, the hangup handler [ivr-settle], AstDB when no engine
answers. Time runs at 1/10 (a virtual second is 0.1 s), so a 60 s call takes 6 s.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from asterisk_sim import CallRecord, CallScript, Continuation, DialScript, place_call
from ivr.dialplan import SETTLE_SCRIPT, UNSETTLED_FAMILY, UNSETTLED_VALUE, parse_unsettled
from rating.store.sqlite import SqliteStore

from .conftest import ACCESS
from .test_lifecycle import free_port, log_events, prepare, start_engine

CALLER = "+41790000001"
SCALE = 0.1


def dialplan(port: int | None = None) -> Continuation:
    """asterisk-conf/extensions.conf after AGI(): [prepaid-in] label `settle`, [ivr-settle]."""
    return Continuation(after_agi=(SETTLE_SCRIPT, ("after-agi", ACCESS)), after_agi_priority=12,
                        handlers={"ivr-settle": (SETTLE_SCRIPT, ("hangup-handler", ACCESS), 2)},
                        pushed=("ivr-settle",), only_with="IVR_HOLD",
                        unsettled=(f"{UNSETTLED_FAMILY}/${{UNIQUEID}}", UNSETTLED_VALUE), port=port)


def call(port: int, uniqueid: str, talk_s: int, *, settle_port: int | None = None, caller: str = CALLER,
         hangup_at_ms: int | None = None) -> asyncio.Task[CallRecord]:
    return asyncio.create_task(place_call("127.0.0.1", port, CallScript(
        caller_id=caller, extension=ACCESS, time_scale=SCALE, uniqueid=uniqueid, idle_timeout_s=30,
        hangup_at_ms=hangup_at_ms, dials=[DialScript(ring_ms=1000, talk_ms=talk_s * 1000)],
        continuation=dialplan(settle_port))))


async def settled_state(db: Path, card_id: int) -> tuple[list[object], tuple[int, int, int]]:
    async with SqliteStore(db) as store:
        card = await store.card(card_id)
        return list(await store.cdrs()), (card.balance_s, card.reserved_s, card.active_calls)


async def test_kill_9_mid_dial_restart_before_the_end_settles_exactly(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    proc, port, _ = await start_engine(db)
    task = call(port, "u.kill", talk_s=90)
    await asyncio.sleep(1.2 + 0.6)   # the Dial began ~0.6 s after the IVR answer; 12 s into the call
    proc.kill()                       # kill -9: no finally, no settle, no CDR
    await proc.wait()
    await asyncio.sleep(0.1)
    restarted, _, _ = await start_engine(db, port=port)
    record = await task
    (cdr,), (balance, reserved, active) = await settled_state(db, cards[CALLER])
    assert len(record.sessions) == 1 and record.sessions[0].closed_by == "server"
    assert (cdr.outcome, cdr.talk_s, cdr.debited_s) == ("ANSWERED", 90, 90)   # exact (±1 s): 90 s talked
    assert (cdr.card_id, cdr.dialled, cdr.caller_e164) == (cards[CALLER], ACCESS, CALLER)
    assert (balance, reserved, active) == (600 - 90, 0, 0)                    # the card is free
    assert record.database == {} and record.variables["IVR_HOLD"] == ""
    restarted.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(restarted.communicate(), 20)
    events = log_events(stderr)
    (settled,) = [e for e in events if e["event"] == "hold_settled"]
    assert (settled["settled_by"], settled["talk_source"], settled["debited_s"]) == ("after-agi", "stamps", 90)


async def test_kill_9_and_back_long_after_the_end_facts_wait_in_astdb(tmp_path: Path) -> None:
    from ivr.app import Engine
    from ivr.metrics import Metrics
    from ivr.settings import Settings

    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    proc, port, _ = await start_engine(db)
    task = call(port, "u.gone", talk_s=20)
    await asyncio.sleep(1.2)
    proc.kill()
    await proc.wait()
    record = await task   # the call ends while no engine listens: refused, facts to AstDB
    assert record.sessions == []
    ((key, value),) = record.database.items()
    assert key == f"{UNSETTLED_FAMILY}/u.gone"
    facts = parse_unsettled(value)
    assert facts.hold_id is not None and facts.dial.status == "ANSWER" and facts.talk.ms == 20_000
    _, (_, reserved, active) = await settled_state(db, cards[CALLER])
    assert (reserved, active) == (600, 1)   # held until an engine comes back

    # Back long after: what the reconciliation does with the AstDB entry (ami helper).
    engine = await Engine.create(Settings(database=str(db), port=0, metrics_port=0), metrics=Metrics())
    try:
        result = await engine.settle_facts(facts, uniqueid="u.gone", caller_raw=CALLER, dialled=ACCESS,
                                           settled_by="astdb")
        again = await engine.settle_facts(facts, uniqueid="u.gone", caller_raw=CALLER, dialled=ACCESS,
                                          settled_by="astdb")
    finally:
        await engine.stop(grace_s=0)
    assert result is not None and (result.state, result.talk_s, result.debited_s) == ("settled", 20, 20)
    assert again is not None and again.state == "already_settled"
    (cdr,), state = await settled_state(db, cards[CALLER])
    assert (cdr.talk_s, cdr.debited_s, state) == (20, 20, (580, 0, 0))


async def test_sigterm_hands_live_dials_over_and_the_next_engine_settles(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    callers = ["+41790000001", "+41790000002"]
    cards = await prepare(db, callers)
    proc, port, _ = await start_engine(db, "--grace", "3")
    long = call(port, "u.long", talk_s=90, caller=callers[0])
    await asyncio.sleep(1.2)
    proc.send_signal(signal.SIGTERM)   # grace 3 s; the call has ~8 s real to go
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    events = log_events(stderr)
    assert [e["event"] for e in events if e["event"] in ("call_handed_over", "call_finished")] == [
        "call_handed_over"]   # no guess billed, no CDR written by the stopping engine
    successor, _, _ = await start_engine(db, port=port)   # the deploy's new engine
    record = await long
    (cdr,), state = await settled_state(db, cards[callers[0]])
    assert (cdr.outcome, cdr.talk_s, cdr.debited_s) == ("ANSWERED", 90, 90)
    assert state == (600 - 90, 0, 0) and len(record.sessions) == 1
    successor.send_signal(signal.SIGTERM)
    await asyncio.wait_for(successor.communicate(), 20)


async def test_two_engines_one_database_the_other_settles(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    first, port_a, _ = await start_engine(db)
    second, port_b, _ = await start_engine(db)
    task = call(port_a, "u.two", talk_s=25, settle_port=port_b)
    await asyncio.sleep(1.2)
    first.kill()
    await first.wait()
    record = await task
    (cdr,), state = await settled_state(db, cards[CALLER])
    assert (cdr.talk_s, cdr.debited_s, state) == (25, 25, (575, 0, 0)) and len(record.sessions) == 1
    second.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(second.communicate(), 20)
    assert any(e["event"] == "hold_settled" for e in log_events(stderr))


async def test_caller_hangs_up_while_the_engine_is_gone_the_hangup_handler_settles(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    proc, port, _ = await start_engine(db)
    # e2: the caller leaves 70 s after the IVR answered, the engine died before
    task = call(port, "u.e2", talk_s=120, hangup_at_ms=70_000)
    await asyncio.sleep(1.2)
    proc.kill()
    await proc.wait()
    restarted, _, _ = await start_engine(db, port=port)
    record = await task
    (cdr,), state = await settled_state(db, cards[CALLER])
    (session,) = record.sessions   # only the hangup handler's, on the dead channel
    assert [c.split()[0] for c in session.commands] == ["GET", "SET"]
    talk = 70 - record.dials[0]["answered_at_ms"] / 1000 if record.dials else None
    assert talk is not None and abs(cdr.talk_s - talk) <= 1 and cdr.debited_s == cdr.talk_s
    assert state == (600 - cdr.debited_s, 0, 0)
    restarted.send_signal(signal.SIGTERM)
    await asyncio.wait_for(restarted.communicate(), 20)


async def test_normal_end_the_hangup_handler_finds_nothing_to_do(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    proc, port, _ = await start_engine(db)
    record = await call(port, "u.ok", talk_s=6)
    assert record.sessions == [] and record.variables["IVR_HOLD"] == ""
    (cdr,), state = await settled_state(db, cards[CALLER])
    assert (cdr.talk_s, cdr.debited_s, state) == (6, 6, (594, 0, 0))
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), 20)


__all__ = ["free_port"]


# --- the settle route itself, over a raw socket: twice, settled already, unknown ----------

async def _settle_route(port: int, uniqueid: str, facts: str) -> list[bytes]:
    """Play one settle-route session as a hangup handler's (dead channel); return the commands."""
    from .test_robustness import env_block

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    block = env_block(uniqueid).replace(b"agi_network_script: prepaid", b"agi_network_script: settle")
    writer.write(block.replace(b"\n\n", b"\nagi_arg_1: hangup-handler\nagi_arg_2: " + ACCESS.encode() + b"\n\n", 1))
    commands = []
    while line := await reader.readline():
        commands.append(line)
        writer.write(b"200 result=1 (" + facts.encode() + b")\n" if line.startswith(b"GET FULL") else
                     b"200 result=1\n")
    writer.close()
    return commands


async def test_settle_route_twice_settled_already_and_unknown(h, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from structlog.testing import capture_logs

    from rating.models import HoldCall

    card, _ = await h.card(minutes=10)
    grant = await h.store.reserve(card_id=card.id, uniqueid="u.route", rule=h.project.rule, max_calls=1,
                                  hold_s=60, now_ms=1_796_193_853_000,
                                  call=HoldCall(caller_raw=CALLER, caller_e164=CALLER, dialled=ACCESS,
                                                start_ms=1_796_193_850_000))
    facts = (f"ANSWER,6505,1796193853.608,1796193859.609,1796193853.101,16,"
             f"r{grant.reservation_id} limit=600 factor=1000 Local/100@prepaid-service/n")
    port = h.engine.server.port
    with capture_logs() as logs:
        first = await _settle_route(port, "u.route", facts)
        second = await _settle_route(port, "u.route", facts)       # the hold is settled already
        other = await _settle_route(port, "u.other", facts)        # a hold of another call
        unknown = await _settle_route(port, "u.route", facts.replace(f"r{grant.reservation_id} ", "r999999 "))
    for commands in (first, second, other, unknown):
        assert commands[0].startswith(b'GET FULL VARIABLE "${DIALSTATUS},')
        assert commands[1:] == [b'SET VARIABLE "IVR_HOLD" ""\n']   # nothing to do: the handler stops here
    after = await h.store.card(card.id)
    assert (after.balance_s, after.reserved_s, after.active_calls) == (600 - 7, 0, 0)   # 6.001 s -> 7 s, once
    (cdr,) = await h.cdrs()
    assert (cdr.uniqueid, cdr.talk_s, cdr.debited_s, cdr.card_id, cdr.start_ms) == (
        "u.route", 7, 7, card.id, 1_796_193_850_000)
    events = [e["event"] for e in logs if e["event"].startswith(("hold_", "settle_"))]
    assert events == ["hold_settled", "hold_already_settled", "settle_unknown_hold", "settle_unknown_hold"]
