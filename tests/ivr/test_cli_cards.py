"""``ivr card …`` as an operator uses it: buy, quote, batch with CSV, list, show, bind,
unbind, recharge, block, reset-pin, expire — and the refusals that change nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.cli._app import os_user
from ivr.settings import load_settings
from rating.pins import pin_hash
from tests.postgres import store_backends

from .test_cli_helpers import PROJECT, Cli, query, snapshot

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli and project fixtures

CARD_KEYS = {"card", "project", "note", "status", "remaining_s", "reserved_s", "in_calls", "price_cents",
             "currency", "created_at", "activated_at", "expires_at", "bound_numbers"}
NEW_CARD_KEYS = {"card", "pin", "project", "note", "minutes", "seconds", "price_cents", "currency", "expires_at"}
QUOTE_KEYS = {"project", "minutes", "count", "price_cents", "total_cents", "currency"}


def buy(cli: Cli, minutes: int = 60, note: str = "Hans Muster") -> dict[str, Any]:
    return cli.json("card", "create", "--project", "test1", "--minutes", str(minutes), "--note", note)  # type: ignore[no-any-return]


def pin_works(cli: Cli, card_id: str, pin: str) -> bool:
    secret = load_settings(overrides={"database": str(cli.db)}).secret_path.read_bytes().strip()
    rows = query(cli.db, "SELECT id FROM cards WHERE project_id = 1 AND pin_hash = ?", pin_hash(secret, 1, pin))
    return rows == [(int(card_id),)]


def test_create_prints_the_pin_once_and_charges_the_account(cli: Cli, project: dict[str, Any]) -> None:
    data = buy(cli)
    assert set(data) == NEW_CARD_KEYS
    assert isinstance(data["card"], str) and isinstance(data["pin"], str)
    assert re.fullmatch(r"\d{12}", data["pin"])
    assert (data["minutes"], data["seconds"], data["price_cents"], data["currency"]) == (60, 3600, 3000, "CHF")
    assert pin_works(cli, data["card"], data["pin"])
    assert cli.json("account", "show")["owed_cents"] == 3000
    out = cli("card", "create", "--project", "test1", "--minutes", "10").stdout
    assert "(shown once: write it down)" in out and "callers dial 044 123 45 67" in out


def test_quote_changes_nothing(cli: Cli, project: dict[str, Any]) -> None:
    before = snapshot(cli.db)
    data = cli.json("card", "create", "--project", "test1", "--minutes", "45", "--quote", "--count", "3")
    assert data == {"project": "test1", "minutes": 45, "count": 3, "price_cents": 2250, "total_cents": 6750,
                    "currency": "CHF"}
    assert cli.json("card", "quote", "--project", "test1", "--minutes", "45").keys() == QUOTE_KEYS
    assert cli("card", "quote", "--project", "test1", "--minutes", "45").stdout == "45 min in test1: 22.50 CHF\n"
    assert snapshot(cli.db) == before


def test_batch_writes_a_private_csv_with_working_pins(cli: Cli, project: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    result = cli("card", "create", "--project", "test1", "--minutes", "30", "--note", "fair", "--count", "4",
                 "--csv", str(path))
    assert "4 cards bought" in result.stdout and "60.00 CHF in all" in result.stdout
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [r["card"] for r in rows] == ["1", "2", "3", "4"]
    assert {(r["minutes"], r["price"], r["currency"], r["note"]) for r in rows} == {("30", "15.00", "CHF", "fair")}
    assert rows[0]["access_number_national"] == "044 123 45 67"
    assert len({r["pin"] for r in rows}) == 4
    assert all(pin_works(cli, r["card"], r["pin"]) for r in rows)
    assert cli.json("account", "show")["owed_cents"] == 6000


def test_batch_refuses_to_overwrite_without_yes(cli: Cli, project: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_text("keep me")
    args = ["card", "create", "--project", "test1", "--minutes", "30", "--count", "2", "--csv", str(path)]
    assert cli.fails(*args) == f"CliError: {path} exists; add --yes to overwrite it"
    assert path.read_text() == "keep me"
    cli(*args, "--yes")
    assert len(path.read_text().splitlines()) == 3


def test_one_card_can_go_to_a_csv_too(cli: Cli, project: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    data = cli.json("card", "create", "--project", "test1", "--minutes", "15", "--csv", str(path))
    [row] = list(csv.DictReader(io.StringIO(path.read_text())))
    assert (row["card"], row["pin"], row["minutes"], row["price"]) == (data["card"], data["pin"], "15", "7.50")


def test_batch_needs_a_csv_or_json(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.fails("card", "create", "--project", "test1", "--minutes", "5", "--count", "2",
                     code=2).startswith("UsageError: --count writes the PINs to a file")
    data = cli.json("card", "create", "--project", "test1", "--minutes", "5", "--count", "2")
    assert set(data) == QUOTE_KEYS | {"csv", "cards"}
    assert [set(c) for c in data["cards"]] == [NEW_CARD_KEYS] * 2 and data["csv"] is None


def test_bad_card_input_is_one_line_and_changes_nothing(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.fails("card", "create", "--project", "test1", "--minutes", "-5") == \
        "InvalidInput: minutes must be between 1 and 599940, not -5"
    assert cli.fails("card", "create", "--project", "test1", "--minutes", "0").startswith("InvalidInput: ")
    assert cli.fails("card", "create", "--project", "nope", "--minutes", "5") == "NotFound: no project 'nope'"
    assert cli.fails("card", "create", "--project", "test1", "--minutes", "5", "--count", "0").startswith(
        "InvalidInput: count must be between 1")
    assert cli.fails("card", "show", "42") == "NotFound: no card 42"
    assert cli.fails("card", "show", "abc") == "InvalidInput: card id 'abc' is not a number"
    assert cli.fails("card", "recharge", "42", "--minutes", "5") == "NotFound: no card 42"


def test_list_filters_sorts_and_shows_hms(cli: Cli, project: dict[str, Any]) -> None:
    big, small, other = buy(cli, 90, "Hans Muster"), buy(cli, 5, "Erika Muster"), buy(cli, 30, "Firma AG")
    cli("card", "block", other["card"], "--yes")
    lines = cli("card", "list", "--sort", "remaining").stdout.splitlines()
    assert lines[0].split()[:4] == ["CARD", "PROJECT", "STATUS", "REMAINING"]
    assert [line.split()[0] for line in lines[2:]] == [small["card"], other["card"], big["card"]]
    assert "1:30:00" in lines[-1]
    data = cli.json("card", "list", "--search", "muster", "--status", "new")
    assert [c["card"] for c in data] == [big["card"], small["card"]]
    assert set(data[0]) == CARD_KEYS
    assert [c["card"] for c in cli.json("card", "list", "--status", "blocked")] == [other["card"]]
    assert [c["card"] for c in cli.json("card", "list", "--reverse")] == [other["card"], small["card"], big["card"]]
    assert cli("card", "list", "--search", "nobody").stdout == "no cards\n"
    assert cli.fails("card", "list", "--status", "lost", code=2).startswith("BadParameter: ")


def test_show_has_status_bindings_ledger_and_calls(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli)
    cli("card", "bind", card["card"], "079 123 45 67")
    cli("card", "recharge", card["card"], "--minutes", "10")
    data = cli.json("card", "show", card["card"])
    assert set(data) == CARD_KEYS | {"ledger", "last_calls", "binding_history"}
    assert (data["status"], data["remaining_s"]) == ("active", 4200)
    assert [(e["number"], e["action"], e["by"]) for e in data["binding_history"]] == [
        ("+41791234567", "bind", "operator")]
    assert data["activated_at"] is not None
    assert data["bound_numbers"] == [{"number": "+41791234567", "national": "0791234567",
                                      "bound_at": data["bound_numbers"][0]["bound_at"], "by": "operator"}]
    assert [(e["kind"], e["seconds"], e["amount_cents"]) for e in data["ledger"]] == [
        ("purchase", 3600, 3000), ("recharge", 600, 500)]
    assert data["last_calls"] == []
    out = cli("card", "show", card["card"]).stdout
    assert "remaining:  1:10:00" in out and "079 123 45 67" in out and "operator" in out


def test_bind_normalises_and_warns_about_the_caller_id(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli)
    result = cli("card", "bind", card["card"], "0791234567", "--json")
    assert result.stderr.startswith("note: this must be the caller ID the network really delivers")
    assert cli.json("card", "bind", card["card"], "+41 79 765 43 21") == {
        "card": card["card"], "number": "+41797654321", "national": "0797654321", "by": "operator",
        "actor": os_user(), "moved_from": None, "unbound": []}
    assert cli.fails("card", "bind", card["card"], "0791234567") == \
        "AlreadyExists: +41791234567 is already bound to card 1"
    assert cli.fails("card", "bind", card["card"], "anonymous").startswith("InvalidInput: not a phone number")


def test_bind_asks_before_moving_a_number_or_dropping_one(cli: Cli, project: dict[str, Any]) -> None:
    first, second = buy(cli), buy(cli)
    cli("card", "bind", first["card"], "0791234567")
    line = cli.fails("card", "bind", second["card"], "0791234567", input="n\n")
    assert line == "Cancelled: nothing changed"
    moved = cli.json("card", "bind", second["card"], "0791234567", "--yes")
    assert moved["moved_from"] == first["card"]
    for n in ("0790000002", "0790000003"):
        cli("card", "bind", second["card"], n)
    result = cli("card", "bind", second["card"], "0790000004", input="y\n")
    assert "+41791234567 will be unbound" in result.stderr
    bound = [b["number"] for b in cli.json("card", "show", second["card"])["bound_numbers"]]
    assert bound == ["+41790000002", "+41790000003", "+41790000004"]


def test_unbind_asks_and_refuses_unknown_numbers(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli)
    cli("card", "bind", card["card"], "0791234567")
    assert cli.fails("card", "unbind", card["card"], "0791234567", input="\n").endswith("nothing changed")
    assert cli.json("card", "unbind", card["card"], "0791234567", "--yes") == {
        "card": card["card"], "number": "+41791234567", "unbound": True, "actor": os_user()}
    assert cli.fails("card", "unbind", card["card"], "0791234567", "--yes") == \
        "NotFound: +41791234567 is not bound to card 1"


@pytest.mark.parametrize("backend", store_backends())
def test_bind_and_unbind_record_who_did_it(backend: Any, request: pytest.FixtureRequest, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``--by NAME`` as for ``account pay`` and ``blacklist add`` (default: your user name),
    kept in the binding history on either store and shown by ``card show``."""
    monkeypatch.setenv("IVR_DATABASE", backend(request, tmp_path))
    monkeypatch.setenv("IVR_SECRET_FILE", str(tmp_path / "ivr.secret"))

    def ivr(*args: str) -> Any:
        result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    ivr("db", "migrate")
    ivr(*PROJECT)
    card = ivr("card", "create", "--project", "test1", "--minutes", "10")["card"]
    assert ivr("card", "bind", card, "0791234567", "--by", "anna")["actor"] == "anna"
    assert ivr("card", "bind", card, "0797654321")["actor"] == os_user()
    assert ivr("card", "unbind", card, "0791234567", "--yes", "--by", "bob")["actor"] == "bob"
    history = ivr("card", "show", card)["binding_history"]
    assert [(e["number"], e["action"], e["by"], e["actor"]) for e in history] == [
        ("+41791234567", "bind", "operator", "anna"), ("+41797654321", "bind", "operator", os_user()),
        ("+41791234567", "unbind", "operator", "bob")]
    shown = CliRunner().invoke(main, ["card", "show", card]).stdout
    table = shown[shown.index("binding history:"):].splitlines()
    assert table[1].split() == ["AT", "NUMBER", "ACTION", "HOW", "WHO"]
    assert [line.split()[-1] for line in table[3:] if line.strip()] == ["anna", os_user(), "bob"]  # under the rule


def test_recharge_prices_and_bills_the_minutes(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli, 10)
    data = cli.json("card", "recharge", card["card"], "--minutes", "30")
    assert data == {"card": card["card"], "added_s": 1800, "remaining_s": 2400, "price_cents": 1500,
                    "currency": "CHF"}
    assert cli.json("account", "show")["owed_cents"] == 500 + 1500
    assert cli.fails("card", "recharge", card["card"], "--minutes", "-5").startswith("InvalidInput: minutes")


def test_block_asks_and_hangup_needs_ami(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli)
    assert cli.fails("card", "block", card["card"]).endswith("nothing changed (no answer; add --yes to confirm"
                                                             " without asking)")
    # Without AMI settings --hangup is refused in one line and nothing changes.
    assert cli.fails("card", "block", card["card"], "--hangup", "--yes") == (
        "AmiNotConfigured: --hangup needs AMI: set ami_host and ami_secret (IVR_AMI_HOST, IVR_AMI_SECRET or the"
        " TOML file), as for ivr serve; nothing changed")
    assert cli.json("card", "show", card["card"])["status"] == "new"
    cli("card", "block", card["card"], input="y\n")
    assert cli.json("card", "show", card["card"])["status"] == "blocked"
    assert cli.json("card", "unblock", card["card"]) == {"card": card["card"], "blocked": False, "in_calls": 0}
    assert cli.json("card", "show", card["card"])["status"] == "new"


def test_reset_pin_gives_a_new_unique_pin(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli)
    assert cli.fails("card", "reset-pin", card["card"], input="n\n").endswith("nothing changed")
    data = cli.json("card", "reset-pin", card["card"], "--yes")
    assert set(data) == {"card", "pin"} and data["pin"] != card["pin"]
    assert pin_works(cli, card["card"], data["pin"])
    assert not pin_works(cli, card["card"], card["pin"])


def test_expire_on_a_date_never_and_not_in_the_past(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli)
    day = date.today() + timedelta(days=30)
    data = cli.json("card", "expire", card["card"], "--on", day.isoformat(), "--yes")
    midnight = datetime.combine(day + timedelta(days=1), datetime.min.time()).astimezone()
    assert datetime.fromisoformat(data["expires_at"]) == midnight
    german = f"{day.day:02d}.{day.month:02d}.{day.year}"
    cli("card", "expire", card["card"], "--on", german, "--yes")
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    assert cli.fails("card", "expire", card["card"], "--on", yesterday, "--yes") == \
        f"InvalidInput: {yesterday} is in the past: the last day can be today at the earliest"
    assert cli.fails("card", "expire", card["card"], "--on", "31.02.2026", "--yes").startswith(
        "InvalidInput: not a date")
    assert cli.fails("card", "expire", card["card"], code=2).startswith(
        "UsageError: give either --on DATE or --never")
    assert cli.json("card", "expire", card["card"], "--never", "--yes")["expires_at"] is None


def test_an_expired_card_is_not_recharged(cli: Cli, project: dict[str, Any]) -> None:
    card = buy(cli)
    query(cli.db, "UPDATE cards SET expires_ms = 1000 WHERE id = ?", int(card["card"]))
    assert cli.json("card", "show", card["card"])["status"] == "expired"
    assert cli.fails("card", "recharge", card["card"], "--minutes", "5").startswith(
        "CardExpired: card 1 has expired; give it a new date first")


# --- issue 12, item 11: a purchase is all or nothing, checked whole before it starts ----
def four_digit_project(cli: Cli) -> None:
    cli("project", "create", "short", "--number", "0447654321", "--region", "CH", "--service", "PJSIP/1@x",
        "--price-per-minute", "0.50", "--currency", "CHF", "--pin-length", "4")


def test_a_batch_fills_a_short_pin_space_to_its_last_pin_and_refuses_past_it(cli: Cli, project: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    four_digit_project(cli)
    path = tmp_path / "cards.csv"
    args = ["card", "create", "--project", "short", "--minutes", "1", "--count", "9990", "--csv", str(path)]
    # 9,990 cards at 0.50 owe 4,995.00: past the lock limit, refused before the first card.
    assert cli.fails(*args) == (
        "AccountLocked: 9990 cards cost 4995.00 CHF: the account owes 0.00 CHF and would owe 4995.00 CHF, more"
        " than its lock limit of 250.00 CHF; at most 500 such cards fit (or pay first: ivr account pay AMOUNT)")
    assert not path.exists()
    cli("account", "limits", "--info", "9000", "--lock", "10000")
    result = cli(*args)
    assert "9990 cards bought for project short" in result.stdout
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert len(rows) == len({r["pin"] for r in rows}) == 9990
    assert all(re.fullmatch(r"\d{4}", r["pin"]) for r in rows)
    assert cli.json("account", "show")["owed_cents"] == 9990 * 50
    assert query(cli.db, "SELECT COUNT(*), SUM(amount_cents) FROM ledger WHERE kind = 'purchase'") == [(9990, 499500)]
    # The PIN space holds 10,000: 10 more fit, 11 do not (refused whole, before it starts).
    more = ["card", "create", "--project", "short", "--minutes", "1", "--json"]
    assert cli.fails(*more, "--count", "11") == (
        "InvalidInput: project short has 4-digit PINs (10,000 in all) and 9,990 cards: at most 10 more fit, not 11"
        " (a project with longer PINs holds more)")
    nine = cli.json(*more[:-1], "--count", "9")["cards"]
    # One PIN is free in all 10,000: reset-pin finds it (drawing at random, it gave up after 20).
    one_card = nine[0]["card"]
    reset = cli.json("card", "reset-pin", one_card, "--yes")
    taken = {c["pin"] for c in nine[1:]} | {r["pin"] for r in rows}
    assert len(taken) == 9_998 and reset["pin"] not in taken and reset["pin"] != nine[0]["pin"]
    last = cli.json(*more[:-1], "--count", "1")["cards"]
    assert len({c["pin"] for c in last} | taken | {reset["pin"]}) == 10_000
    assert cli.fails("card", "reset-pin", one_card, "--yes") == (
        "InvalidInput: project short has 4-digit PINs (10,000 in all) and 10,000 cards: no PIN is free"
        " (a project with longer PINs holds more)")
    assert cli.fails(*more) == (
        "InvalidInput: project short has 4-digit PINs (10,000 in all) and 10,000 cards: at most 0 more fit, not 1"
        " (a project with longer PINs holds more)")


def test_a_batch_that_fails_half_way_buys_nothing_and_leaves_no_pin_file(cli: Cli, project: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    buy(cli, 10)
    # The database refuses the 4th card of the batch (as a full disk would, half way).
    query(cli.db, "CREATE TRIGGER half_way BEFORE INSERT ON cards WHEN (SELECT COUNT(*) FROM cards) >= 4"
                  " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    path = tmp_path / "cards.csv"
    line = cli.fails("card", "create", "--project", "test1", "--minutes", "30", "--count", "5", "--csv", str(path))
    assert line == ("InvalidInput: create_cards: refused by the database (disk full)"
                    f" (nothing was bought; {path} removed)")
    assert not path.exists()
    assert cli.json("account", "show")["owed_cents"] == 500
    assert [c["card"] for c in cli.json("card", "list")] == ["1"]
    query(cli.db, "DROP TRIGGER half_way")
    cli("card", "create", "--project", "test1", "--minutes", "30", "--count", "5", "--csv", str(path))
    assert [r["card"] for r in csv.DictReader(io.StringIO(path.read_text()))] == ["2", "3", "4", "5", "6"]


def test_a_batch_within_the_lock_limit_is_bought_and_one_past_it_refused(cli: Cli, project: dict[str, Any]) -> None:
    cli("account", "limits", "--info", "10", "--lock", "25")
    assert len(cli.json("card", "create", "--project", "test1", "--minutes", "10", "--count", "5")["cards"]) == 5
    assert cli.fails("card", "create", "--project", "test1", "--minutes", "1", "--count", "2", "--json") == (
        "AccountLocked: 2 cards cost 1.00 CHF: the account owes 25.00 CHF and would owe 26.00 CHF, more than its"
        " lock limit of 25.00 CHF; at most 0 such cards fit (or pay first: ivr account pay AMOUNT)")
    buy(cli, 1)     # one card is refused only once the account is locked (the lock limit's rule)
    assert cli.json("account", "show")["state"] == "locked"
