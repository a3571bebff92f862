"""The engine with AMI, as real processes: the engine (``ivr serve``), the CLI, and in the
test process the fake Asterisk (FastAGI calls in real time, and its AMI port).

Live calls and hang-ups by the operator; reconciliation after an engine kill -9, exact
from the facts the dialplan keeps in AstDB and estimated (RECONCILED) without them;
the AMI lost and back; an engine without AMI settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from asterisk_sim import AmiServer, CallRecord, CallScript, DialScript, place_call
from ivr.dialplan import UNSETTLED_FAMILY
from rating.store.sqlite import SqliteStore

from .conftest import ACCESS
from .test_lifecycle import _no_engine_outlives_its_test, launch_engine, log_events, prepare  # noqa: F401 - autouse

IVR = str(Path(sys.executable).with_name("ivr"))
CALLER = "+41791234567"
START = Decimal("1796200000.000")
WAIT_S = 30.0

@pytest.fixture
async def ami() -> AsyncIterator[AmiServer]:
    async with AmiServer() as server:
        yield server


def ami_env(ami: AmiServer) -> dict[str, str]:
    return {**os.environ, "IVR_AMI_HOST": "127.0.0.1", "IVR_AMI_PORT": str(ami.port), "IVR_AMI_SECRET": "secret"}


async def engine(db: Path, ami: AmiServer | None, port: int | None = None) -> tuple[asyncio.subprocess.Process, int]:
    env = {**(ami_env(ami) if ami else os.environ), "IVR_RECONCILE_S": "1"}
    proc, port, _ = await launch_engine(["--database", str(db)], [], port=port, env=env)
    return proc, port


async def ivr(db: Path, ami: AmiServer | None, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        IVR, "--database", str(db), *args, env=ami_env(ami) if ami else dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    return proc.returncode or 0, out.decode(), err.decode()


def script(uniqueid: str, talk_ms: int) -> CallScript:
    """A bound caller whose service answers after 0.2 s and talks ``talk_ms``, in real time."""
    return CallScript(caller_id=CALLER, extension=ACCESS, uniqueid=uniqueid, start_epoch=START, time_scale=1.0,
                      answer_ms=100, prompt_ms=100, idle_timeout_s=WAIT_S,
                      dials=[DialScript(ring_ms=200, talk_ms=talk_ms)])


async def until(predicate: Any, what: str, timeout_s: float = WAIT_S) -> Any:
    for _ in range(int(timeout_s / 0.05)):
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def talking(ami: AmiServer, uniqueid: str) -> bool:
    return any(c["Uniqueid"] == uniqueid and c["BridgeId"] for c in ami.channels())


async def card_state(db: Path, card_id: int) -> tuple[int, int, list[Any]]:
    async with SqliteStore(db) as store:
        card = await store.card(card_id)
        cdrs = [c for c in await store.cdrs() if c.card_id == card_id]
        return card.balance_s, card.active_calls, cdrs


async def settled(db: Path, card_id: int) -> tuple[int, int, list[Any]] | None:
    """The card's state once its call is settled (no call in progress, a CDR)."""
    state = await card_state(db, card_id)
    return state if state[1] == 0 and state[2] else None


def kept_facts(record: CallRecord, start: Decimal) -> str:
    """The AstDB value ``[ivr-settle]`` writes when no engine answers the settle route
    (ivr/dialplan.py UNSETTLED_VALUE), from the fake channel's own variables at the end
    of the call; IVR_ENDED as ``[ivr-stamp-end]`` stamps it at the callee's hang-up."""
    v = record.variables
    [dial] = record.dials
    ended = start + Decimal(dial["ended_at_ms"]) / 1000
    answer_u = start  # the IVR answered at 0 (CDR(answer,u))
    return (f"v1,{int(ended)},{v['DIALSTATUS']},{v['ANSWEREDTIME_MS']},{v['SHARED(IVR_ANSWERED)']},{ended:.3f},"
            f"{answer_u:.6f},{v['HANGUPCAUSE']},{v['IVR_HOLD']}")


# --------------------------------------------------------------------------- operators


async def test_calls_lists_a_live_call_and_hangup_ends_it(tmp_path: Path, ami: AmiServer) -> None:
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    proc, port = await engine(db, ami)
    uid = "1796200000.11"
    call = asyncio.create_task(place_call("127.0.0.1", port, script(uid, 60_000), ami=ami))
    await until(lambda: talking(ami, uid), "the call to be talking")
    code, out, err = await ivr(db, ami, "calls", "--json")
    assert code == 0, err
    [live] = json.loads(out)
    assert live["uniqueid"] == uid and live["project"] == "test1" and live["card"] == str(cards[CALLER])
    assert (live["caller"], live["destination"], live["state"]) == (CALLER, "Local/100@svc/n", "talking")
    assert isinstance(live["talk_s"], int) and 0 <= live["talk_s"] < 60
    code, out, err = await ivr(db, ami, "calls")
    assert code == 0 and uid in out and "talking" in out
    await asyncio.sleep(1.0)
    code, out, err = await ivr(db, ami, "calls", "hangup", uid)
    assert (code, err) == (0, ""), err
    record = await asyncio.wait_for(call, WAIT_S)
    assert record.hung_up_by == "ami" and record.dials[0]["ended_by"] == "ami"
    balance, active, cdrs = await until(lambda: settled(db, cards[CALLER]), "the CDR")
    [cdr] = cdrs
    talk_s = -(-record.dials[0]["talk_ms"] // 1000)
    assert (cdr.outcome, cdr.hangup_side, active) == ("ANSWERED", "caller", 0)
    assert abs(cdr.debited_s - talk_s) <= 1 and balance == 600 - cdr.debited_s
    assert (await ivr(db, ami, "calls", "hangup", uid))[2].startswith("CliError: no live call with uniqueid")
    proc.send_signal(signal.SIGTERM)
    await proc.wait()


async def test_card_block_hangup_cuts_the_callee_and_the_caller_hears_why(tmp_path: Path, ami: AmiServer) -> None:
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    proc, port = await engine(db, ami)
    uid = "1796200000.21"
    call = asyncio.create_task(place_call("127.0.0.1", port, script(uid, 60_000), ami=ami))
    await until(lambda: talking(ami, uid), "the call to be talking")
    await asyncio.sleep(1.0)
    code, out, err = await ivr(db, ami, "card", "block", str(cards[CALLER]), "--hangup", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out) == {"card": str(cards[CALLER]), "blocked": True, "in_calls": 1, "hung_up": [uid]}
    record = await asyncio.wait_for(call, WAIT_S)
    assert record.dials[0]["ended_by"] == "ami"            # the callee's leg was hung up …
    assert "ivr/card-blocked" in " ".join(record.prompts_played)  # … and the caller heard why
    assert record.hung_up_by == "server"
    balance, active, cdrs = await until(lambda: settled(db, cards[CALLER]), "the CDR")
    [cdr] = cdrs
    assert (cdr.outcome, cdr.hangup_side, active) == ("ANSWERED", "engine", 0)
    assert abs(cdr.debited_s - -(-record.dials[0]["talk_ms"] // 1000)) <= 1
    assert (await ivr(db, ami, "card", "show", str(cards[CALLER]), "--json"))[1].count('"blocked"') >= 1
    proc.send_signal(signal.SIGTERM)
    await proc.wait()


async def test_without_ami_settings(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    proc, port = await engine(db, None)
    record = await place_call("127.0.0.1", port, CallScript(caller_id=CALLER, extension=ACCESS,
                                                            dials=[DialScript(talk_ms=5000)]))
    assert record.dials[0]["status"] == "ANSWER"
    for command in (["calls"], ["calls", "hangup", "1.2"], ["card", "block", str(cards[CALLER]), "--hangup", "--yes"]):
        code, out, err = await ivr(db, None, *command)
        assert code == 1 and out == "" and err.startswith("AmiNotConfigured: ") and err.count("\n") == 1, err
    assert (await card_state(db, cards[CALLER]))[0] == 600 - 5     # not blocked: its calls go on
    proc.send_signal(signal.SIGTERM)
    _, err_bytes = await proc.communicate()
    events = [e["event"] for e in log_events(err_bytes)]
    assert events.count("ami_not_configured") == 1


# --------------------------------------------------------------------------- reconciliation


async def kill_mid_dial(tmp_path: Path, ami: AmiServer, uid: str, talk_ms: int
                        ) -> tuple[Path, int, asyncio.Task[CallRecord], int]:
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, [CALLER])
    proc, port = await engine(db, ami)
    call = asyncio.create_task(place_call("127.0.0.1", port, script(uid, talk_ms), ami=ami))
    await until(lambda: talking(ami, uid), "the call to be talking")
    proc.kill()                       # kill -9 during the Dial: Asterisk lets the Dial go on (e1)
    await proc.wait()
    return db, cards[CALLER], call, port


async def test_engine_killed_mid_dial_settled_exactly_from_astdb(tmp_path: Path, ami: AmiServer) -> None:
    db, card, call, port = await kill_mid_dial(tmp_path, ami, "1796200000.31", 6000)
    proc, _ = await engine(db, ami, port)          # restarted before the call ends
    record = await asyncio.wait_for(call, WAIT_S)
    ended = asyncio.get_running_loop().time()
    ami.astdb[(UNSETTLED_FAMILY, record.uniqueid)] = kept_facts(record, START)   # as [ivr-settle] does
    balance, active, cdrs = await until(lambda: settled(db, card), "the settlement from AstDB")
    print(f"measured: exact from AstDB, card free {asyncio.get_running_loop().time() - ended:.1f} s after the"
          f" call ended (reconcile_s=1); talk {record.dials[0]['talk_ms']} ms, debited {cdrs[0].debited_s} s")
    [cdr] = cdrs
    assert (cdr.outcome, cdr.talk_s, cdr.debited_s, active) == ("ANSWERED", 6, 6, 0)
    assert balance == 600 - 6
    await until(lambda: (UNSETTLED_FAMILY, record.uniqueid) not in ami.astdb, "the AstDB entry deleted")
    proc.send_signal(signal.SIGTERM)
    _, err = await proc.communicate()
    assert [e for e in log_events(err) if e["event"] == "hold_settled"][0]["settled_by"] == "astdb"


async def test_engine_killed_mid_dial_without_facts_is_estimated(tmp_path: Path, ami: AmiServer) -> None:
    db, card, call, port = await kill_mid_dial(tmp_path, ami, "1796200000.41", 4000)
    proc, _ = await engine(db, ami, port)
    record = await asyncio.wait_for(call, WAIT_S)  # the Dial ended; no settle route, no AstDB facts
    ended = asyncio.get_running_loop().time()
    balance, active, cdrs = await until(lambda: settled(db, card), "the estimate")
    print(f"measured: estimated, card free {asyncio.get_running_loop().time() - ended:.1f} s after the call"
          f" ended (reconcile_s=1, grace 3 s); talk {record.dials[0]['talk_ms']} ms, debited {cdrs[0].debited_s} s")
    [cdr] = cdrs
    assert (cdr.outcome, cdr.hangup_side, active) == ("RECONCILED", "unknown", 0)
    # Never less than the real talk; more by at most the prompts, the ringing and one pass.
    assert 4 <= cdr.debited_s <= 4 + 4 and balance == 600 - cdr.debited_s
    proc.send_signal(signal.SIGTERM)
    _, err = await proc.communicate()
    [estimated] = [e for e in log_events(err) if e["event"] == "hold_estimated"]
    assert estimated["end_bound_by"] == "first_pass_missing" and record.dials[0]["talk_ms"] == 4000


async def test_ami_lost_and_back_then_the_kept_facts_are_settled(tmp_path: Path, ami: AmiServer) -> None:
    db, card, call, port = await kill_mid_dial(tmp_path, ami, "1796200000.51", 3000)
    await ami.close()                              # Asterisk's manager goes away too
    proc, _ = await engine(db, ami, port)
    record = await asyncio.wait_for(call, WAIT_S)
    ami.astdb[(UNSETTLED_FAMILY, record.uniqueid)] = kept_facts(record, START)
    await asyncio.sleep(3)
    assert (await card_state(db, card))[1] == 1    # nobody can read the facts yet: the hold stays
    await ami.start()                              # back on the same port
    balance, active, cdrs = await until(lambda: settled(db, card), "the settlement once AMI is back")
    [cdr] = cdrs
    assert (cdr.outcome, cdr.debited_s, active) == ("ANSWERED", 3, 0)
    proc.send_signal(signal.SIGTERM)
    _, err = await proc.communicate()
    assert "ami_connected" in [e["event"] for e in log_events(err)]


# --------------------------------------------------------------------------- several Asterisk boxes


async def test_two_asterisk_boxes_one_database_each_judges_only_its_own_holds(tmp_path: Path,
                                                                             ami: AmiServer) -> None:
    """Issue 10: engine 1 watches Asterisk A over AMI (reconcile_s=1, grace 3 s); Asterisk
    B (another box: it connects from 127.0.0.2, its channels are in its own AMI) sends
    one call to engine 2, then one to engine 1, on the same database. B's calls are not
    in A's channel list, yet the first is not estimated by engine 1, engine 1 does not
    take A for the wrong Asterisk while it serves the second, and both are billed
    exactly at their end."""
    db = tmp_path / "ivr.sqlite3"
    other = "+41791234568"
    cards = await prepare(db, [CALLER, other])
    watching, port_1 = await engine(db, ami)
    plain, port_2 = await engine(db, None)
    async with AmiServer() as box_b:
        def from_b(port: int, uid: str, caller: str, talk_ms: int) -> Any:
            return place_call("127.0.0.1", port, replace(script(uid, talk_ms), caller_id=caller,
                                                         source_address="127.0.0.2"), ami=box_b)
        # First B's call through engine 2 alone: engine 1 serves nothing it could miss.
        first = await asyncio.wait_for(from_b(port_2, "b.1796200000.62", other, 8000), WAIT_S)
        second = await asyncio.wait_for(from_b(port_1, "b.1796200000.61", CALLER, 4000), WAIT_S)
    assert (first.dials[0]["talk_ms"], second.dials[0]["talk_ms"]) == (8000, 4000)
    for caller, talk_s in ((other, 8), (CALLER, 4)):
        balance, active, cdrs = await until(lambda c=caller: settled(db, cards[c]), "the settlement")
        [cdr] = cdrs
        assert (cdr.outcome, cdr.talk_s, cdr.debited_s, balance, active) == ("ANSWERED", talk_s, talk_s,
                                                                              600 - talk_s, 0)
    for proc in (watching, plain):
        proc.send_signal(signal.SIGTERM)
    _, err = await watching.communicate()
    await plain.communicate()
    events = [e["event"] for e in log_events(err)]
    assert "hold_estimated" not in events and "reconcile_wrong_asterisk" not in events
    assert "ami_connected" in events   # engine 1 did watch A and reconcile


def test_an_address_has_one_spelling_and_unknown_origins_are_ours() -> None:
    from ivr.reconcile import is_ours, normal_address

    own = frozenset({"10.0.0.5", "2001:db8::1"})
    assert normal_address("::ffff:10.0.0.5") == "10.0.0.5"    # a dual-stack socket's IPv4 peer
    assert normal_address("2001:DB8:0::1") == "2001:db8::1"
    assert normal_address("fe80::1%eth0") == "fe80::1"
    assert normal_address("asterisk-b") == "asterisk-b"       # a name stays a name
    assert is_ours("::ffff:10.0.0.5", own) and is_ours("2001:db8::1", own)
    assert is_ours(None, own) and is_ours("", own)              # a hold from before migration 7
    assert not is_ours("10.0.0.6", own)
