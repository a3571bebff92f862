"""``ivr route …``, ``ivr zone …`` and the routing options of ``ivr project update``."""

from __future__ import annotations

from typing import Any

from .test_cli_helpers import Cli

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli and project fixtures

TRUNK = "PJSIP/{e164}@carrier"


def destinations(cli: Cli) -> list[str]:
    return [r["destination"] for r in cli.json("route", "list", "test1")]


def test_the_service_is_rule_one_and_rules_are_added_in_order(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.json("route", "list", "test1") == [{
        "position": 1, "destination": "PJSIP/100@office", "kind": "dial_string", "when": "always", "hours": None,
        "closed_on": [], "ring_timeout_s": 30}]
    added = cli.json("route", "add", "test1", "PJSIP/200@office", "--when", "busy,noanswer",
                     "--hours", "mo-fr 08:00-12:00,13:00-17:00", "--closed-on", "2026-12-25", "--ring-timeout", "15")
    assert added == {"position": 2, "destination": "PJSIP/200@office", "kind": "dial_string",
                     "when": "busy,noanswer", "hours": "mon,tue,wed,thu,fri 08:00-12:00; mon,tue,wed,thu,fri"
                     " 13:00-17:00", "closed_on": ["2026-12-25"], "ring_timeout_s": 15}
    cli("route", "add", "test1", "PJSIP/300@office", "--position", "1")
    assert destinations(cli) == ["PJSIP/300@office", "PJSIP/100@office", "PJSIP/200@office"]
    cli("route", "move", "test1", "1", "--to", "3")
    assert destinations(cli) == ["PJSIP/100@office", "PJSIP/200@office", "PJSIP/300@office"]
    out = cli("route", "list", "test1").stdout
    assert "HOURS (Europe/Zurich)" in out and "closed' prompt" in out
    assert cli.json("project", "show", "test1")["fallback"] == "PJSIP/200@office"


def test_numbers_need_a_trunk_and_the_policy(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.fails("route", "add", "test1", "+4930123456").startswith("InvalidInput: project test1 has no trunk")
    data = cli.json("project", "update", "test1", "--trunk", TRUNK, "--allow-countries", "de,ch",
                    "--block-types", "premium_rate,satellite", "--timezone", "Europe/Berlin")
    assert (data["trunk"], data["allow_countries"], data["blocked_number_types"], data["timezone"]) == (
        TRUNK, ["DE", "CH"], ["premium_rate", "satellite"], "Europe/Berlin")
    added = cli.json("route", "add", "test1", "+49 30 1234567")
    assert (added["destination"], added["kind"]) == ("+49301234567", "number")
    assert cli.fails("route", "add", "test1", "+33612345678") == \
        "DestinationRefused: +33612345678 is in FR, not an allowed country (DE, CH)"
    assert cli.fails("route", "add", "test1", "0900 123 456") == \
        "DestinationRefused: +41900123456 is a premium-rate number, a blocked type"
    # a German block in a Swiss project: national digits mean Switzerland unless --region says otherwise
    cli("blacklist", "add", "030123456x", "--project", "test1", "--region", "DE", "--direction", "outbound")
    assert cli.fails("route", "add", "test1", "+49 30 1234568").startswith("DestinationRefused: +49301234568"
                                                                           " matches the outbound block")
    # shared cost is no longer a blocked type in this project
    assert cli.json("route", "add", "test1", "0848 123 456")["destination"] == "+41848123456"


def test_bad_values_are_one_line(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.fails("route", "add", "test1", "PJSIP/1@x", "--when", "sometimes").startswith(
        "InvalidInput: condition 'sometimes'")
    assert cli.fails("route", "add", "test1", "PJSIP/1@x", "--hours", "weekdays 9-5").startswith(
        "InvalidInput: days 'weekdays'")
    assert cli.fails("route", "add", "test1", "PJSIP/1@x", "--closed-on", "2026-12-25").startswith(
        "InvalidInput: --closed-on needs --hours")
    assert cli.fails("route", "add", "test1", "PJSIP/1@x,60").startswith("InvalidInput: not a dial string")
    assert cli.fails("route", "add", "nope", "PJSIP/1@x") == "NotFound: no project 'nope'"
    assert cli.fails("project", "update", "test1", "--timezone", "Europe/Nowhere").startswith(
        "InvalidInput: time zone 'Europe/Nowhere'")
    assert cli.fails("project", "update", "test1", "--trunk", "PJSIP/100@carrier").startswith(
        "InvalidInput: trunk 'PJSIP/100@carrier'")
    assert cli.fails("project", "update", "test1", "--allow-countries", "DE,XX").startswith(
        "InvalidInput: country 'XX'")
    assert cli.fails("project", "update", "test1", "--block-types", "expensive").startswith(
        "InvalidInput: number types 'expensive'")
    assert cli.fails("route", "move", "test1", "1", "--to", "5") == "NotFound: no rule 5 (the project has 1)"


def test_remove_asks_first_and_keeps_the_last_rule(cli: Cli, project: dict[str, Any]) -> None:
    cli("route", "add", "test1", "PJSIP/200@office", "--when", "busy")
    assert cli.fails("route", "remove", "test1", "2", input="n\n") == "Cancelled: nothing changed"
    assert len(cli.json("route", "remove", "test1", "1", "--yes")) == 1
    assert destinations(cli) == ["PJSIP/200@office"]
    assert cli.json("project", "show", "test1")["service"] == "PJSIP/200@office"
    assert cli.fails("route", "remove", "test1", "1", "--yes").startswith(
        "InvalidInput: project test1 needs at least one rule")
    assert cli.fails("route", "remove", "test1", "3", "--yes", code=2).startswith(
        "BadParameter: Invalid value for POSITION: no rule 3")


def test_zone_factors_and_quota(cli: Cli, project: dict[str, Any]) -> None:
    data = cli.json("zone", "set", "test1", "national=1200", "eu=1,3", "--quota", "15")
    assert data == {"project": "test1", "quota_s": 900, "factors_pm": {
        "national": 1200, "national_mobile": 1000, "eu": 1300, "europe": 1000, "world": 1000}}
    assert cli.json("zone", "list", "test1") == data
    cli("zone", "set", "test1", "national=1000")
    assert cli.json("zone", "list", "test1")["factors_pm"]["national"] == 1000
    out = cli("project", "show", "test1").stdout
    assert "zone factors:       eu 1.3" in out and "15 min per card and month" in out
    assert "forwarding rules (tried in this order):" in out
    assert cli.fails("zone", "set", "test1", "moon=2").startswith("InvalidInput: zone 'moon'")
    assert cli.fails("zone", "set", "test1", "eu=0").startswith("InvalidInput: factor '0' out of range")
    assert cli.fails("zone", "set", "test1", "eu", code=2).startswith(
        "BadParameter: Invalid value for FACTORS: 'eu': ZONE=FACTOR")
    assert cli.fails("zone", "set", "test1").startswith("InvalidInput: nothing to change")
