"""``ivr project …`` as an operator uses it, and the rules every command shares."""

from __future__ import annotations

import json
from typing import Any

from .test_cli_helpers import PROJECT, Cli

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli and project fixtures

PROJECT_KEYS = {
    "name", "numbers", "service", "fallback", "ring_timeout_s", "language", "region",
    "price_per_minute_cents", "currency", "connect_charge_s", "minimum_s", "initial_block_s", "increment_s",
    "warning_s", "pin_length", "max_bound_numbers", "max_simultaneous_calls", "card_validity_days",
    "when_bindings_full", "when_card_used_up",
    # routing (issue 11)
    "timezone", "trunk", "allow_countries", "blocked_number_types", "routes", "factors_pm", "quota_s",
}
ROUTING_KEYS = {"timezone", "trunk", "allow_countries", "blocked_number_types", "routes", "factors_pm", "quota_s"}


def test_create_normalises_numbers_and_keeps_every_setting(cli: Cli) -> None:
    data = cli.json("project", "create", "hotline", "--number", "044 123 45 67", "--number", "+41 44 123 45 68",
                    "--number", "0041441234569", "--region", "ch", "--service", "PJSIP/100@office",
                    "--fallback", "PJSIP/200@office", "--ring-timeout", "25", "--language", "en",
                    "--price-per-minute", "1,20", "--currency", "chf", "--connect-charge", "5", "--minimum", "30",
                    "--initial-block", "60", "--increment", "10", "--warning", "90", "--pin-length", "6",
                    "--max-bound-numbers", "2", "--max-calls", "2", "--validity-days", "365")
    assert set(data) == PROJECT_KEYS
    assert data["numbers"] == [{"e164": "+41441234567", "national": "0441234567"},
                               {"e164": "+41441234568", "national": "0441234568"},
                               {"e164": "+41441234569", "national": "0441234569"}]
    assert {k: data[k] for k in PROJECT_KEYS - {"numbers", "name"} - ROUTING_KEYS} == {
        "service": "PJSIP/100@office", "fallback": "PJSIP/200@office", "ring_timeout_s": 25, "language": "en",
        "region": "CH", "price_per_minute_cents": 120, "currency": "CHF", "connect_charge_s": 5,
        "minimum_s": 30, "initial_block_s": 60, "increment_s": 10, "warning_s": 90, "pin_length": 6,
        "max_bound_numbers": 2, "max_simultaneous_calls": 2, "card_validity_days": 365,
        "when_bindings_full": "refuse", "when_card_used_up": "end"}


def test_show_prints_both_number_forms_aligned(cli: Cli, project: dict[str, Any]) -> None:
    out = cli("project", "show", "test1").stdout
    assert "+41441234567 (044 123 45 67)" in out
    assert "0.50 CHF" in out
    fields = [line for line in out.splitlines()[1:out.splitlines().index("")] if line.startswith("  ")]
    starts = {line.index(line.split(":", 1)[1].strip()) for line in fields}
    assert len(fields) == 23 and len(starts) == 1  # every value starts in one column


def test_show_json_counts_cards_by_status(cli: Cli, project: dict[str, Any]) -> None:
    cli("card", "create", "--project", "test1", "--minutes", "5")
    data = cli.json("project", "show", "test1")
    assert set(data) == PROJECT_KEYS | {"cards", "guessing"}
    assert data["cards"] == {"new": 1, "active": 0, "exhausted": 0, "blocked": 0, "expired": 0}


def test_list_table_and_json(cli: Cli, project: dict[str, Any]) -> None:
    cli("project", "create", "other", "--number", "0449999999", "--region", "CH", "--service", "PJSIP/1@x",
        "--currency", "CHF")
    lines = cli("project", "list").stdout.splitlines()
    assert lines[0].split() == ["PROJECT", "ACCESS", "NUMBERS", "SERVICE", "PRICE/MIN", "LANG", "CARDS"]
    assert [line.split()[0] for line in lines[2:]] == ["other", "test1"]
    assert len({len(line) for line in lines[:2]}) == 1
    data = cli.json("project", "list")
    assert [p["name"] for p in data] == ["other", "test1"]
    assert set(data[0]) == PROJECT_KEYS | {"cards"}


def test_list_without_projects_says_how_to_start(cli: Cli) -> None:
    assert "ivr project create" in cli.fails("project", "list")  # no database yet: nothing created
    assert not cli.db.exists()
    cli("db", "migrate")
    assert "ivr project create" in cli("project", "list").stdout
    assert cli.json("project", "list") == []


def test_update_changes_only_the_given_options(cli: Cli, project: dict[str, Any]) -> None:
    result = cli("project", "update", "test1", "--price-per-minute", "0.60", "--warning", "30")
    assert "price per minute: 0.50 CHF -> 0.60 CHF" in result.stdout
    after = cli.json("project", "show", "test1")
    changed = {k for k in PROJECT_KEYS if after[k] != project[k]}
    assert changed == {"price_per_minute_cents", "warning_s"}
    assert (after["price_per_minute_cents"], after["warning_s"]) == (60, 30)


def test_update_numbers_fallback_and_validity(cli: Cli, project: dict[str, Any]) -> None:
    cli("project", "update", "test1", "--fallback", "PJSIP/200@office", "--validity-days", "30")
    data = cli.json("project", "update", "test1", "--add-number", "0441234568", "--remove-number",
                    "+41441234567", "--no-fallback", "--no-validity")
    assert [n["e164"] for n in data["numbers"]] == ["+41441234568"]
    assert (data["fallback"], data["card_validity_days"]) == (None, None)


def test_update_refusals_change_nothing(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.fails("project", "update", "test1") == \
        "InvalidInput: nothing to change: give at least one option"
    assert cli.fails("project", "update", "test1", "--remove-number", "0441234567").startswith(
        "InvalidInput: a project needs at least one access number")
    assert cli.fails("project", "update", "test1", "--increment", "0").startswith("InvalidInput: ")
    assert cli.fails("project", "update", "nope", "--warning", "5") == "NotFound: no project 'nope'"
    assert cli.fails("project", "update", "test1", "--currency", "EUR").startswith("CurrencyMismatch: ")
    cli("card", "create", "--project", "test1", "--minutes", "1")
    assert "PIN length can only change before the first card" in \
        cli.fails("project", "update", "test1", "--pin-length", "10")
    assert cli.fails("project", "update", "test1", "--fallback", "x", "--no-fallback", code=2).startswith(
        "UsageError: --fallback and --no-fallback")


def test_create_refusals_are_one_line_and_change_nothing(cli: Cli, project: dict[str, Any]) -> None:
    base = ["project", "create", "p2", "--service", "PJSIP/1@x", "--region", "CH", "--currency", "CHF"]
    assert cli.fails(*PROJECT) == "AlreadyExists: project 'test1' exists already"
    assert cli.fails(*base, "--number", "+41441234567") == \
        "AlreadyExists: +41441234567 is already an access number of project test1"
    assert cli.fails(*base, "--number", "12ab").startswith("InvalidInput: not a phone number: '12ab'")
    assert cli.fails(*base, "--number", "0441111111", "--price-per-minute", "-1").startswith(
        "InvalidInput: --price-per-minute: ")
    assert cli.fails(*base, "--number", "0441111111", "--price-per-minute", "0.505").startswith(
        "InvalidInput: --price-per-minute: ")
    assert cli.fails(*base, "--number", "0441111111", "--region", "XX").startswith("InvalidInput: region 'XX'")
    assert cli.fails(*base, "--number", "0441111111", "--service", "bad dial").startswith("InvalidInput: service")
    assert cli.fails(*base, "--number", "0441111111", "--pin-length", "3") == \
        "InvalidInput: PIN length must be between 4 and 16"
    assert cli.fails("project", "create", "p3", "--number", "0441111111", "--region", "CH", "--service",
                     "PJSIP/1@x", "--currency", "EUR").startswith("CurrencyMismatch: project p3 is in EUR")
    assert cli.fails("project", "create", "bad name", "--number", "0441111111", "--service",
                     "PJSIP/1@x").startswith("InvalidInput: project name 'bad name'")


def test_usage_errors_exit_2_with_one_line(cli: Cli) -> None:
    line = cli.fails("project", "create", "p", "--number", "0441111111", code=2)
    assert line.startswith("MissingParameter: Missing option '--service'")
    assert cli.fails("project", "create", "p", "--service", "x", "--number", "1", "--language", "fr",
                     code=2).startswith("BadParameter: Invalid value for '--language'")
    assert cli.fails("no-such-command", code=2).startswith("NoSuchCommand: ")
    assert cli.fails("card", "create", "--project", "test1", "--minutes", "ten", code=2).startswith(
        "BadParameter: ")


def test_project_list_json_is_clean_while_warning_on_stderr(cli: Cli, project: dict[str, Any]) -> None:
    cli("account", "limits", "--info", "1")
    cli("card", "create", "--project", "test1", "--minutes", "10")
    result = cli("project", "list", "--json")
    assert result.stderr.startswith("warning: the account owes 5.00 CHF, more than the info limit of 1.00 CHF")
    assert [p["name"] for p in json.loads(result.stdout)] == ["test1"]


def test_the_project_chooses_what_a_used_up_bound_card_hears(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.json("project", "show", "test1")["when_card_used_up"] == "end"
    out = cli("project", "update", "test1", "--when-card-used-up", "new-pin").stdout
    assert ("bound card used up: the call ends after the reason -> the caller may type another"
            " card's PIN") in out
    assert cli.json("project", "show", "test1")["when_card_used_up"] == "new-pin"
    assert "'ask' is not one of 'end', 'new-pin'" in cli.fails("project", "update", "test1", "--when-card-used-up",
                                                              "ask", code=2)
