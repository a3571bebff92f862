"""``ivr account …``: every purchase and recharge is a priced line, payments credit it,
the info limit warns on every command, the lock limit refuses purchases and recharges,
and may suspend calls (``ops.calls_suspended``)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from ivr import operations as ops
from rating.store.sqlite import SqliteStore

from .test_cli_helpers import Cli, query

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli and project fixtures

STATE_KEYS = {"currency", "owed_cents", "info_limit_cents", "lock_limit_cents", "state", "suspend_calls",
              "calls_suspended"}
LINE_KEYS = {"at", "kind", "card", "project", "seconds", "amount_cents", "balance_cents", "reference", "by",
             "payment", "corrects"}


def buy(cli: Cli, minutes: int) -> str:
    return cli.json("card", "create", "--project", "test1", "--minutes", str(minutes))["card"]  # type: ignore[no-any-return]


def test_show_defaults(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.json("account", "show") == {
        "currency": "CHF", "owed_cents": 0, "info_limit_cents": 15000, "lock_limit_cents": 25000,
        "state": "ok", "suspend_calls": False, "calls_suspended": False, "payments": []}
    out = cli("account", "show").stdout
    assert "owed:         0.00 CHF" in out and "lock limit:   250.00 CHF" in out


def test_purchases_recharges_and_payments_make_the_statement(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli, 60)
    buy(cli, 10)
    cli("card", "recharge", card, "--minutes", "30")
    paid = cli.json("account", "pay", "20.50", "--reference", "bank 2026-11", "--by", "erika")
    assert set(paid) == STATE_KEYS | {"paid_cents", "payment"}
    assert (paid["paid_cents"], paid["owed_cents"]) == (2050, 3000 + 500 + 1500 - 2050)
    data = cli.json("account", "statement")
    assert set(data) == {"currency", "month", "opening_cents", "closing_cents", "lines"}
    assert set(data["lines"][0]) == LINE_KEYS
    assert [(x["kind"], x["card"], x["seconds"], x["amount_cents"], x["balance_cents"]) for x in data["lines"]] == [
        ("purchase", "1", 3600, 3000, 3000), ("purchase", "2", 600, 500, 3500),
        ("recharge", "1", 1800, 1500, 5000), ("payment", None, 0, -2050, 2950)]
    assert (data["lines"][3]["reference"], data["lines"][3]["by"]) == ("bank 2026-11", "erika")
    assert (data["opening_cents"], data["closing_cents"]) == (0, 2950)
    lines = cli("account", "statement").stdout.splitlines()
    assert lines[1].split() == ["DATE", "WHAT", "CARD", "PROJECT", "TIME", "AMOUNT", "OWED", "REFERENCE"]
    assert lines[-2].rstrip().endswith("bank 2026-11")  # the payment, with its reference
    assert lines[-1] == "  owed at the end:   29.50 CHF"


def test_statement_for_a_month_opens_with_the_earlier_balance(cli: Cli, project: dict[str, Any],
                                                             tmp_path: Path) -> None:
    buy(cli, 10)
    buy(cli, 20)
    # the first purchase was in October 2026 (UTC 12:00, the same day everywhere)
    query(cli.db, "UPDATE ledger SET at_ms = 1791979200000 WHERE id = 1")
    month = time.strftime("%Y-%m")
    data = cli.json("account", "statement", "--month", month)
    assert (data["month"], data["opening_cents"], data["closing_cents"]) == (month, 500, 1500)
    assert [x["amount_cents"] for x in data["lines"]] == [1000]
    assert cli.json("account", "statement", "--month", "2026-10")["lines"][0]["amount_cents"] == 500
    path = tmp_path / "statement.csv"
    cli("account", "statement", "--csv", str(path))
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["kind"], r["amount"], r["balance"], r["currency"]) for r in rows] == [
        ("purchase", "5.00", "5.00", "CHF"), ("purchase", "10.00", "15.00", "CHF")]
    assert cli.fails("account", "statement", "--month", "2026-13") == \
        "InvalidInput: not a month: '2026-13' (YYYY-MM)"


def test_payments_are_decimal_and_positive(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.json("account", "pay", "100,05")["owed_cents"] == -10005
    out = cli("account", "show").stdout
    assert "nothing (100.05 CHF paid in advance)" in out
    for bad in ("-5", "0", "1.005", "abc", "NaN"):
        assert cli.fails("account", "pay", bad).startswith("InvalidInput: ")


def test_info_limit_warns_on_every_command(cli: Cli, project: dict[str, Any]) -> None:
    cli("account", "limits", "--info", "20", "--lock", "100")
    buy(cli, 30)  # 15.00: not more than 20
    assert cli("card", "list").stderr == ""
    buy(cli, 12)  # 21.00 owed
    for args in (["card", "list"], ["project", "show", "test1"], ["blacklist", "list"], ["cdr", "report"]):
        result = cli(*args, "--json")
        assert result.stderr == ("warning: the account owes 21.00 CHF, more than the info limit of 20.00 CHF"
                                 " (lock at 100.00 CHF; pay with: ivr account pay AMOUNT)\n")
    assert cli.json("account", "show")["state"] == "info"


def test_lock_limit_refuses_purchases_until_a_payment(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli, 60)                                  # 30.00
    cli("account", "limits", "--info", "10", "--lock", "25")
    locked = ("AccountLocked: the account owes 30.00 CHF, more than its lock limit of 25.00 CHF:"
              " no new cards or recharges until a payment (ivr account pay AMOUNT)")
    assert cli.fails("card", "create", "--project", "test1", "--minutes", "1") == locked
    assert cli.fails("card", "recharge", card, "--minutes", "1") == locked
    assert cli.fails("card", "create", "--project", "test1", "--minutes", "1", "--count", "3", "--json") == locked
    cli("card", "create", "--project", "test1", "--minutes", "1", "--quote")   # quoting still works
    assert "warning: account locked" in cli("card", "show", card).stderr
    cli("account", "pay", "10")
    assert cli.json("account", "show")["state"] == "info"
    buy(cli, 1)


def test_limits_and_suspended_calls(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.fails("account", "limits", "--info", "300") == \
        "InvalidInput: the info limit (300.00 CHF) must not be above the lock limit (250.00 CHF)"
    data = cli.json("account", "limits", "--lock", "0", "--info", "0", "--suspend-calls")
    assert (data["suspend_calls"], data["state"], data["calls_suspended"]) == (True, "ok", False)
    buy(cli, 1)
    data = cli.json("account", "limits")
    assert (data["state"], data["calls_suspended"]) == ("locked", True)
    assert "suspended now" in cli("account", "show").stdout

    async def engine_view() -> tuple[bool, ops.AccountState]:
        async with SqliteStore(cli.db) as store:
            return await ops.calls_suspended(store), await ops.account_state(store)
    suspended, state = cli.run(engine_view())
    assert suspended and state.level is ops.AccountLevel.LOCKED and state.owed_cents == 50
    cli("account", "limits", "--no-suspend-calls")
    assert cli.run(engine_view())[0] is False


def test_one_currency_per_account(cli: Cli) -> None:
    cli("db", "migrate")  # an empty database: read commands refuse one that does not exist
    assert cli.json("account", "show")["currency"] is None
    assert cli.fails("account", "pay", "10") == "InvalidInput: the account has no currency yet: create a project first"
    cli("project", "create", "ch", "--number", "0441234567", "--region", "CH", "--service", "PJSIP/1@x",
        "--currency", "CHF")
    assert cli.fails("project", "create", "de", "--number", "030123456", "--region", "DE", "--service", "PJSIP/1@x",
                     "--currency", "EUR") == (
        "CurrencyMismatch: project de is in EUR, but this database's account is kept in CHF; one account has"
        " one currency (use another database for another currency)")



# --- issue 12, item 12: a mistyped payment is corrected by an entry of its own ---------
def test_a_mistyped_payment_is_taken_back_by_a_correction_naming_it(cli: Cli, project: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    buy(cli, 60)                                                               # 30.00 owed
    paid = cli.json("account", "pay", "1.50", "--reference", "bank 42", "--by", "erika")
    assert (paid["payment"], paid["owed_cents"]) == ("1", 2850)
    assert "payment #2 of 15.00 CHF recorded (mistyped? ivr account correct 2)" in cli("account", "pay", "15").stdout
    # Without an answer nothing changes; --yes takes back all that is left of the payment.
    assert cli.fails("account", "correct", "1", input="") == \
        "Cancelled: nothing changed (no answer; add --yes to confirm without asking)"
    done = cli.json("account", "correct", "#1", "--reference", "=typed 1.50 for 15", "--by", "hans", "--yes")
    assert done["owed_cents"] == 3000 - 1500
    assert done["correction"] == {
        "payment": "3", "at": done["correction"]["at"], "kind": "correction", "amount_cents": 150,
        "currency": "CHF", "corrects": "1", "corrected_cents": 0, "reference": "=typed 1.50 for 15", "by": "hans"}
    # Never twice beyond the payment's amount, never a correction of a correction, never an unknown entry.
    assert cli.fails("account", "correct", "1", "--yes") == \
        "InvalidInput: payment 1 (1.50 CHF) is corrected in full already"
    assert cli.fails("account", "correct", "1", "0.01", "--yes") == (
        "InvalidInput: payment 1 was 1.50 CHF (1.50 CHF corrected already): at most 0.00 CHF of it can be"
        " corrected, not 0.01 CHF")
    assert cli.fails("account", "correct", "3", "--yes") == (
        "InvalidInput: entry 3 is a correction of payment 1, not a payment: correct payment 1 itself")
    assert cli.fails("account", "correct", "99", "--yes") == "NotFound: no payment 99"
    assert cli.fails("account", "correct", "one", "--yes").startswith("InvalidInput: payment id 'one' is not")
    for bad in ("-5", "0", "1e1", "1,500", "\uff15"):
        assert cli.fails("account", "correct", "2", bad, "--yes").startswith("InvalidInput: "), bad
    # Part of a payment, then the rest; one cent more than is left is refused.
    cli("account", "correct", "2", "5.00", "--yes")
    assert cli.fails("account", "correct", "2", "10.01", "--yes") == (
        "InvalidInput: payment 2 was 15.00 CHF (5.00 CHF corrected already): at most 10.00 CHF of it can be"
        " corrected, not 10.01 CHF")
    cli("account", "correct", "2", "10", "--yes")
    assert cli.json("account", "show")["owed_cents"] == 3000

    data = cli.json("account", "statement")
    assert [(x["kind"], x["amount_cents"], x["balance_cents"], x["payment"], x["corrects"]) for x in data["lines"]] == [
        ("purchase", 3000, 3000, None, None), ("payment", -150, 2850, "1", None),
        ("payment", -1500, 1350, "2", None), ("correction", 150, 1500, "3", "1"),
        ("correction", 500, 2000, "4", "2"), ("correction", 1000, 3000, "5", "2")]
    assert (data["lines"][3]["reference"], data["lines"][3]["by"]) == ("=typed 1.50 for 15", "hans")
    lines = cli("account", "statement").stdout.splitlines()
    assert "payment #1" in lines[4] and lines[4].rstrip().endswith("bank 42")
    assert "correction #3" in lines[6] and lines[6].rstrip().endswith("corrects #1: =typed 1.50 for 15")
    assert lines[-1] == "  owed at the end:   30.00 CHF"
    path = tmp_path / "statement.csv"
    cli("account", "statement", "--csv", str(path))
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["kind"], r["amount"], r["payment"], r["corrects"]) for r in rows][3] == ("correction", "1.50", "3", "1")
    assert rows[3]["reference"] == "'=typed 1.50 for 15"      # a spreadsheet never runs it as a formula

    shown = cli.json("account", "show")["payments"]
    assert [(p["payment"], p["kind"], p["amount_cents"], p["corrects"], p["corrected_cents"]) for p in shown] == [
        ("1", "payment", 150, None, 150), ("2", "payment", 1500, None, 1500), ("3", "correction", 150, "1", 0),
        ("4", "correction", 500, "2", 0), ("5", "correction", 1000, "2", 0)]
    out = cli("account", "show").stdout
    assert "latest payments (correct one: ivr account correct ID)" in out
    assert "CORRECTED" in out and "in full" in out and "corrects #1: =typed 1.50 for 15" in out


def test_a_correction_asks_first_and_shows_what_it_takes_back(cli: Cli, project: dict[str, Any]) -> None:
    cli("account", "pay", "250.00", "--reference", "bank 7")
    result = cli("account", "correct", "1", "200", input="y\n")
    assert "Take back 200.00 CHF of payment #1 (250.00 CHF on " in result.stderr and "'bank 7')?" in result.stderr
    assert "correction #2: 200.00 CHF of payment #1 taken back" in result.stdout
    assert cli.json("account", "show")["owed_cents"] == -5000
