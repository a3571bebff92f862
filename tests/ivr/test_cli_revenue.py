"""Issue 12, item 10: revenue of past calls never changes with today's price. Each CDR
keeps the price per minute and currency its call was rated at; ``cdr list``, ``cdr
report`` and ``card show`` use it. A real engine takes the calls (the fake Asterisk on
loopback), the operator's commands run as separate ``ivr`` processes on the same file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from rating.store._schema import MIGRATIONS

from .conftest import Harness
from .test_cli_helpers import Cli

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli fixture

# The schema just before CDRs kept their price (the migration adding the column).
BEFORE_PRICES = next(i for i, m in enumerate(MIGRATIONS) if "ALTER TABLE cdrs ADD COLUMN price_per_minute_cents" in m)


async def ivr(db: Path, *args: str, json_out: bool = True) -> Any:
    """``python -m ivr.cli --database DB …`` in its own process; its JSON (or text) output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.cli", "--database", str(db), *args, *(["--json"] if json_out else []),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out) if json_out else out.decode()


async def test_a_price_change_does_not_reprice_past_calls(h: Harness, tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    card, pin = await h.card(minutes=10)
    await h.call(digits=[pin + "#"], dials=[dict(talk_ms=96_000)])          # 96 s at 0.50 CHF: 0.80
    assert (await ivr(db, "cdr", "report"))["totals"]["revenue_cents"] == 80

    await ivr(db, "project", "update", "test1", "--price-per-minute", "5.00")
    report = await ivr(db, "cdr", "report")
    assert (report["totals"]["revenue_cents"], report["currency"]) == (80, "CHF")   # not 8.00
    [listed] = await ivr(db, "cdr", "list")
    assert (listed["price_per_minute_cents"], listed["currency"]) == (50, "CHF")

    await h.call(dials=[dict(talk_ms=12_000)])              # bound now; rated at the new price
    calls = await ivr(db, "cdr", "list")
    assert [(c["debited_s"], c["price_per_minute_cents"]) for c in calls] == [(96, 50), (12, 500)]
    assert (await ivr(db, "cdr", "report"))["totals"]["revenue_cents"] == 80 + 100
    shown = await ivr(db, "card", "show", str(card.id))
    assert [c["price_per_minute_cents"] for c in shown["last_calls"]] == [50, 500]
    table = await ivr(db, "cdr", "report", json_out=False)
    assert table.splitlines()[-1].split()[-2:] == ["1.80", "CHF"]
    csv_text = await ivr(db, "cdr", "list", "--csv", "-", json_out=False)
    assert [line.split(",")[-2:] for line in csv_text.splitlines()] == [
        ["price_per_minute", "currency"], ["0.50", "CHF"], ["5.00", "CHF"]]


def test_migration_gives_old_cdrs_their_projects_price_of_the_day(cli: Cli) -> None:
    """A database from before the CDRs kept their price: its CDRs get their project's price at migration
    time (the best there is), and keep it through later price changes."""
    conn = sqlite3.connect(cli.db)
    for migration in MIGRATIONS[:BEFORE_PRICES]:
        for statement in migration.split(";"):
            conn.execute(statement)
    conn.execute("INSERT INTO projects (name, service, ring_timeout_s, language, region, price_per_minute_cents,"
                 " currency, created_ms) VALUES ('old', 'PJSIP/1@x', 30, 'de', 'CH', 50, 'CHF', 0)")
    conn.execute("INSERT INTO access_numbers VALUES ('+41441234567', 1)")
    conn.execute("INSERT INTO routes (project_id, position, destination, conditions) VALUES (1, 1, 'PJSIP/1@x',"
                 " 'always')")
    conn.execute("UPDATE account SET currency = 'CHF'")
    conn.execute("INSERT INTO cdrs (uniqueid, project_id, caller_raw, dialled, start_ms, end_ms, talk_s,"
                 " debited_s, outcome, hangup_side) VALUES ('u1', 1, '+41791234567', '+41441234567', 0, 96000,"
                 " 96, 96, 'ANSWERED', 'caller')")
    conn.execute("INSERT INTO payments (at_ms, amount_cents, currency) VALUES (0, 1000, 'CHF')")
    conn.execute(f"PRAGMA user_version={BEFORE_PRICES}")
    conn.commit()
    conn.close()
    cli("db", "migrate")
    cli("project", "update", "old", "--price-per-minute", "5.00")
    [listed] = cli.json("cdr", "list")
    assert (listed["price_per_minute_cents"], listed["currency"]) == (50, "CHF")
    assert cli.json("cdr", "report")["totals"]["revenue_cents"] == 80
    assert cli.json("account", "show")["owed_cents"] == -1000     # the old payment is a payment still
    cli("account", "correct", "1", "--yes")
    assert cli.json("account", "show")["owed_cents"] == 0
