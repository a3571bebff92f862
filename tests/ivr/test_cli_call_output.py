"""Issue 12, items 15, 16, 19: what ``ivr call`` and the statement show an operator.
A real engine on a loopback port, ``ivr`` as separate processes."""

from __future__ import annotations

import json
import re

from .conftest import ACCESS, CALLER, Harness
from .test_cli_call import ivr


async def test_each_simulated_call_has_its_own_uniqueid_and_consistent_times(h: Harness) -> None:
    card, pin = await h.card(minutes=10)
    port = str(h.engine.server.port) if h.engine.server else ""
    first = await ivr(h, "call", "--port", port, "--from", CALLER, "--to", ACCESS, "--digits", pin + "#",
                      "--talk", "65", "--json")
    second = await ivr(h, "call", "--port", port, "--from", CALLER, "--to", ACCESS, "--talk", "5", "--json")
    assert first[0] == 0 and second[0] == 0, (first[2], second[2])
    ids = [json.loads(first[1])["uniqueid"], json.loads(second[1])["uniqueid"]]
    assert ids[0] != ids[1]
    cdrs = {c.uniqueid: c for c in await h.cdrs()}
    assert set(ids) <= set(cdrs)
    ledger = [e.reference for e in await h.store.ledger(card.id) if e.kind == "debit"]
    assert sorted(ledger) == sorted(ids)
    for uid, talk in zip(ids, (65, 5), strict=True):
        c = cdrs[uid]
        assert c.answer_ms is not None
        assert c.start_ms <= c.answer_ms <= c.end_ms
        assert c.end_ms - c.answer_ms >= talk * 1000
        assert c.end_ms - c.start_ms >= talk * 1000


async def test_dialogue_by_default_raw_protocol_with_verbose(h: Harness) -> None:
    card, pin = await h.card(minutes=10)
    port = str(h.engine.server.port) if h.engine.server else ""
    code, out, err = await ivr(h, "call", "--port", port, "--from", CALLER, "--to", ACCESS,
                               "--digits", "", "--digits", "", "--digits", "", "--talk", "65")
    assert code == 0, err
    assert "agi_uniqueid" not in out and "agi_callerid" not in out
    assert "GET DATA" in out
    assert re.search(r"^digits: +\(timeout: nothing typed\), \(timeout", out, re.M), out
    code, out, err = await ivr(h, "call", "--port", port, "--from", "+41790000001", "--to", ACCESS,
                               "--digits", pin + "#", "--talk", "65", "--verbose")
    assert code == 0, err
    assert "agi_uniqueid:" in out
    assert "(talk 65 s)" in out and "debited:   65 s" in out


async def test_statement_table_shows_the_payment_reference(h: Harness) -> None:
    await h.card(minutes=10)
    code, _, err = await ivr(h, "account", "pay", "5.00", "--reference", "bank 2026-11")
    assert code == 0, err
    code, out, err = await ivr(h, "account", "statement")
    assert code == 0, err
    assert "REFERENCE" in out and "bank 2026-11" in out


async def test_call_port_has_help(h: Harness) -> None:
    code, out, _ = await ivr(h, "call", "--help")
    assert code == 0
    assert re.search(r"--port .*FastAGI port", out), out
