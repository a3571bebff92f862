"""The CLI works while the engine serves calls: the same SQLite file (WAL), a real
engine on a loopback port, a call in flight, and ``ivr …`` run as separate processes —
as an operator runs them on the server."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import Harness, make_harness

OTHER = "+41797654321"
BLOCKED = "+41790000009"


async def ivr(db: Path, *args: str) -> tuple[int, Any, str]:
    """Run ``python -m ivr.cli --database DB … --json`` in its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.cli", "--database", str(db), *args, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if proc.returncode == 0 else None, err.decode()


async def in_flight(h: Harness, card_id: int) -> None:
    for _ in range(200):
        if (await h.store.card(card_id)).active_calls == 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the call never reserved the card's time")


@pytest.mark.slow
async def test_cli_commands_while_a_call_is_in_flight(tmp_path: Path) -> None:
    h = await make_harness(tmp_path)
    db = tmp_path / "ivr.sqlite3"
    try:
        card, pin = await h.card(minutes=10)
        call = asyncio.create_task(h.call(digits=[pin + "#"], dials=[{"ring_ms": 1000, "talk_ms": 60_000}],
                                          time_scale=0.25))
        await in_flight(h, card.id)

        # Five operators' commands at once, against the engine's database, mid-call.
        show, recharge, bought, blocked, account = await asyncio.gather(
            ivr(db, "card", "show", str(card.id)),
            ivr(db, "card", "recharge", str(card.id), "--minutes", "5"),
            ivr(db, "card", "create", "--project", "test1", "--minutes", "3", "--note", "walk-in"),
            ivr(db, "blacklist", "add", BLOCKED, "--project", "test1", "--reason", "pranks"),
            ivr(db, "account", "show"))
        for code, _, err in (show, recharge, bought, blocked, account):
            assert code == 0, err
        assert not call.done(), "the call ended before the commands: the test proves nothing"
        assert (show[1]["in_calls"], show[1]["status"]) == (1, "active")
        assert show[1]["reserved_s"] > 0
        assert recharge[1]["added_s"] == 300

        record = await call
        assert not record.violations
        [cdr] = await h.cdrs()
        assert (cdr.outcome, cdr.talk_s, cdr.debited_s) == ("ANSWERED", 60, 60)
        after = await h.store.card(card.id)
        assert (after.balance_s, after.reserved_s, after.active_calls) == (600 + 300 - 60, 0, 0)
        assert [e.kind for e in await h.store.ledger(card.id)] == ["purchase", "recharge", "debit"]

        # The engine sees what the CLI did: the new card's PIN works, the blocked caller is refused.
        await h.call(caller_id=OTHER, digits=[bought[1]["pin"] + "#"], dials=[{"talk_ms": 5000}])
        await h.call(caller_id=BLOCKED, digits=[pin + "#"])
        outcomes = [(c.caller_e164, c.outcome, c.card_id) for c in (await h.cdrs())[1:]]
        assert outcomes == [(OTHER, "ANSWERED", int(bought[1]["card"])), (BLOCKED, "BLOCKED_CALLER", None)]

        # … and the CLI sees the engine's calls.
        code, report, err = await ivr(db, "cdr", "report", "--by", "outcome")
        assert code == 0, err
        assert {r["key"]: r["calls"] for r in report["rows"]} == {"ANSWERED": 2, "BLOCKED_CALLER": 1}
        assert report["totals"]["revenue_cents"] == 55    # 65 s at 0.50 a minute, rounded up to the cent
        code, owed, err = await ivr(db, "account", "show")
        assert owed["owed_cents"] == 500 + 250 + 150                # card, recharge, walk-in card
    finally:
        await h.engine.stop(grace_s=5)


async def test_cli_writes_wait_for_the_engine_instead_of_failing(tmp_path: Path) -> None:
    """While another writer (the engine settling a call) holds SQLite's write lock, the
    CLI waits (busy_timeout) and succeeds instead of printing 'database is locked'."""
    h = await make_harness(tmp_path)
    db = tmp_path / "ivr.sqlite3"
    try:
        card, _ = await h.card(minutes=10)
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")                    # the write lock, as a settle takes it
        writer.execute("UPDATE cards SET note = note WHERE id = ?", (card.id,))
        command = asyncio.create_task(ivr(db, "card", "recharge", str(card.id), "--minutes", "1"))
        await asyncio.sleep(0.8)
        assert not command.done()
        writer.execute("COMMIT")
        writer.close()
        code, data, err = await command
        assert code == 0, err
        assert data["remaining_s"] == 660
    finally:
        await h.engine.stop(grace_s=5)


def test_the_engine_commands_are_still_there(tmp_path: Path) -> None:
    """serve, config show, demo and call moved into ivr/cli/_engine.py unchanged."""
    from click.testing import CliRunner

    from ivr.cli import main

    db = str(tmp_path / "ivr.sqlite3")
    runner = CliRunner()
    demo = runner.invoke(main, ["--database", db, "demo", "--json"], catch_exceptions=False)
    assert demo.exit_code == 0
    assert json.loads(demo.stdout)["access_number"] == "+4930123456"
    config = runner.invoke(main, ["--database", db, "config", "show", "--json"], catch_exceptions=False)
    assert json.loads(config.stdout)["database"] == db
    for command in ("serve", "call"):
        assert runner.invoke(main, [command, "--help"], catch_exceptions=False).exit_code == 0
