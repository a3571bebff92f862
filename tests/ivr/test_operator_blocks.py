"""Issue 12, items 5-7: blocks that stay in their country, one entry per meaning, and a
project's region and currency from its access number. Driven as an operator does: ``ivr``
through the click runner or as its own process, and calls through the real engine with
the fake Asterisk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ivr.clock import SystemClock
from prompts import Prompt, sound

from .conftest import Harness
from .test_cli_engine import ivr
from .test_cli_helpers import Cli, query

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli and project fixtures

SWISS = "+41795556677"


async def blocked(h: Harness, caller: str) -> bool:
    """Call from ``caller``: True if the engine refused it as a blocked caller."""
    rec = await h.call(caller_id=caller)
    outcome: str = (await h.cdrs())[-1].outcome
    assert (outcome == "BLOCKED_CALLER") is (rec.prompts_played[:1] == [sound(Prompt.NUMBER_BLOCKED)])
    return outcome == "BLOCKED_CALLER"


# --- 5: a national block means its own country -------------------------------------
async def test_a_swiss_national_block_does_not_block_the_same_digits_abroad(h: Harness, tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    code, entry, err = await ivr(db, "blacklist", "add", "0795556677", "--project", "test1")
    assert code == 0, err
    assert (entry["pattern"], entry["stored"]) == (SWISS, SWISS)
    assert await blocked(h, SWISS)
    assert await blocked(h, "0795556677")          # the caller ID in national form
    assert await blocked(h, "0041795556677")
    assert not await blocked(h, "+49795556677")    # the same digits in Germany
    assert not await blocked(h, "+33795556677")    # and in France


async def test_a_global_block_needs_its_country_and_stays_in_it(h: Harness, tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    code, _, err = await ivr(db, "blacklist", "add", "0900.", "--global")
    assert code == 1 and err.startswith("InvalidInput: pattern '0900.' is national, but national numbers mean")
    code, entry, err = await ivr(db, "blacklist", "add", "0900.", "--global", "--region", "CH")
    assert code == 0, err
    assert entry["pattern"] == "+41900."
    assert await blocked(h, "+41900123456")
    assert not await blocked(h, "+49900123456")


async def test_entries_stored_before_keep_the_meaning_they_had_in_their_project(h: Harness) -> None:
    # As the old CLI stored them: national, in the project's list and in the global one.
    now = SystemClock().now_ms()
    for project_id, pattern in [(h.project.id, "0795556677"), (None, "0900.")]:
        await h.store.add_blocked(project_id=project_id, pattern=pattern, direction="inbound", reason="",
                                  added_by="old", now_ms=now)
    assert await blocked(h, SWISS)
    assert await blocked(h, "+41900123456")
    assert not await blocked(h, "+49795556677")
    assert not await blocked(h, "+49900123456")


@pytest.mark.parametrize(("pattern", "message"), [
    ("4.", "InvalidInput: pattern '4.' is neither national (with the trunk prefix 0, e.g. 04.) nor international"),
    ("+4.", "InvalidInput: pattern '+4.' blocks every number of +40 (RO), +41 (CH), +43 (AT), +44 (GB) and 8 more"
            " country codes; add --whole-country if that is meant"),
    ("0.", "InvalidInput: pattern '0.' (+41.) blocks every number of +41 (CH); add --whole-country"),
    ("0041.", "InvalidInput: pattern '0041.' (+41.) blocks every number of +41 (CH)"),
    ("+49xx.", "InvalidInput: pattern '+49xx.' blocks every number of +49 (DE)"),
])
def test_patterns_blocking_whole_countries_need_asking(cli: Cli, project: dict[str, Any], pattern: str,
                                                       message: str) -> None:
    assert cli.fails("blacklist", "add", pattern, "--project", "test1").startswith(message)


def test_a_region_that_is_none_is_refused(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.fails("blacklist", "add", "+41791112244", "--project", "test1", "--region", "XY") == \
        "InvalidInput: region 'XY': an ISO country code such as CH, DE or AT"


def test_whole_countries_when_asked_explicitly(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.json("blacklist", "add", "0.", "--project", "test1", "--whole-country")["pattern"] == "+41."
    assert cli.json("blacklist", "add", "+4.", "--project", "test1", "--whole-country",
                    "--direction", "outbound")["pattern"] == "+4."


# --- 6: one entry per meaning -------------------------------------------------------
def test_one_number_in_two_forms_is_a_duplicate(cli: Cli, project: dict[str, Any]) -> None:
    cli("blacklist", "add", "+41791112244", "--project", "test1")
    for form in ["0791112244", "0041 79 111 22 44", "+41791112244"]:
        assert cli.fails("blacklist", "add", form, "--project", "test1") == \
            "AlreadyExists: +41791112244 (inbound) is already blocked in project test1"
    # another direction, or a number of another country with the same digits, is no duplicate
    cli("blacklist", "add", "0791112244", "--project", "test1", "--direction", "outbound")
    cli("blacklist", "add", "0791112244", "--project", "test1", "--region", "DE")
    assert [e["pattern"] for e in cli.json("blacklist", "list", "--project", "test1")] == \
        ["+41791112244", "+49791112244", "+41791112244"]


def test_remove_by_meaning_also_removes_old_duplicates(cli: Cli, project: dict[str, Any]) -> None:
    # An old database: the same number twice, in two forms (the store takes any text).
    [(project_id,)] = query(cli.db, "SELECT id FROM projects WHERE name = 'test1'")
    for pattern in ["+41791112244", "0791112244"]:
        query(cli.db, "INSERT INTO blacklist (project_id, pattern, direction, reason, created_ms, added_by)"
                      " VALUES (?, ?, 'inbound', 'prank', 0, 'old')", project_id, pattern)
    listed = cli.json("blacklist", "list", "--project", "test1")
    assert [(e["pattern"], e["stored"]) for e in listed] == [("+41791112244", "+41791112244"),
                                                             ("+41791112244", "0791112244")]
    assert cli.fails("blacklist", "add", "+41791112244", "--project", "test1") == \
        "AlreadyExists: +41791112244 (inbound) is already blocked in project test1"
    result = cli("blacklist", "remove", "0791112244", "--project", "test1", input="y\n")
    assert "Unblock +41791112244 (inbound) in project test1, also stored as 0791112244" in result.stderr
    assert result.stdout == ("unblocked +41791112244 (inbound) in project test1"
                             " (2 entries: +41791112244, 0791112244)\n")
    assert cli.json("blacklist", "list") == []
    assert cli.fails("blacklist", "remove", "+41791112244", "--project", "test1", "--yes") == \
        "NotFound: +41791112244 (inbound) is not blocked in project test1"


def test_remove_says_when_the_number_stays_blocked(cli: Cli, project: dict[str, Any]) -> None:
    cli("blacklist", "add", "+41791.", "--global")
    cli("blacklist", "add", "0791112244", "--project", "test1")
    result = cli("blacklist", "remove", "+41791112244", "--project", "test1", "--json", "--yes")
    assert "note: +41791112244 is still blocked by +41791. in every project (global)" in result.stderr


async def test_after_removing_one_form_the_caller_is_no_longer_blocked(h: Harness, tmp_path: Path) -> None:
    now = SystemClock().now_ms()
    for pattern in ["+41791112244", "0791112244"]:
        await h.store.add_blocked(project_id=h.project.id, pattern=pattern, direction="inbound", reason="",
                                  added_by="old", now_ms=now)
    assert await blocked(h, "+41791112244")
    code, data, err = await ivr(tmp_path / "ivr.sqlite3", "blacklist", "remove", "+41791112244",
                                "--project", "test1", "--yes")
    assert code == 0, err
    assert data["removed"] == 2 and data["still_blocked_by"] is None
    assert not await blocked(h, "+41791112244")


def test_import_follows_the_same_rules_line_by_line(cli: Cli, project: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "blocked.csv"
    path.write_text("pattern,reason\n+41791112244,spam\n0900.,premium\n")
    assert cli.fails("blacklist", "import", str(path), "--global") == (
        f"InvalidInput: {path} line 3: pattern '0900.' is national, but national numbers mean a different"
        " country in each project: write it in E.164 (+41…, 0041…) or give its --region")
    path.write_text("pattern\n+41791112244\n4.\n")
    assert cli.fails("blacklist", "import", str(path), "--project", "test1").startswith(
        f"InvalidInput: {path} line 3: pattern '4.' is neither national")
    path.write_text("pattern\n+41791112244\n+41.\n")
    assert cli.fails("blacklist", "import", str(path), "--project", "test1").startswith(
        f"InvalidInput: {path} line 3: pattern '+41.' blocks every number of +41 (CH)")
    path.write_text("pattern\n+41791112244\n079 111 22 44\n")
    assert cli.fails("blacklist", "import", str(path), "--project", "test1") == \
        f"InvalidInput: {path} line 3: +41791112244 (inbound) is already on line 2"
    # national rows mean the project's country; a row already there in another form is counted as such
    cli("blacklist", "add", "0791112244", "--project", "test1")
    path.write_text("pattern\n+41791112244\n0900.\n")
    assert cli.json("blacklist", "import", str(path), "--project", "test1") == {
        "scope": "project", "project": "test1", "added": 1, "already_there": 1, "removed": 0, "replaced": False}
    path.write_text("pattern\n0900.\n")
    assert cli.json("blacklist", "import", str(path), "--global", "--region", "DE")["added"] == 1
    assert [e["pattern"] for e in cli.json("blacklist", "list")] == ["+49900.", "+41791112244", "+41900."]


def test_export_is_in_e164_so_another_country_keeps_its_meaning(cli: Cli, project: dict[str, Any],
                                                                tmp_path: Path) -> None:
    cli("project", "create", "berlin", "--number", "+4930123456", "--service", "PJSIP/1@x", "--currency", "CHF")
    cli("blacklist", "add", "0795556677", "--project", "test1")
    path = tmp_path / "blocked.csv"
    cli("blacklist", "export", str(path), "--project", "test1")
    cli("blacklist", "import", str(path), "--project", "berlin")
    assert [e["pattern"] for e in cli.json("blacklist", "list", "--project", "berlin")] == [SWISS]


# --- 7: a project's region and currency -----------------------------------------------
def test_region_and_currency_come_from_the_first_e164_access_number(cli: Cli) -> None:
    data = cli.json("project", "create", "zh", "--number", "+41441234567", "--service", "PJSIP/100@office")
    assert (data["region"], data["currency"]) == ("CH", "CHF")
    assert data["numbers"] == [{"e164": "+41441234567", "national": "0441234567"}]
    shown = cli("project", "show", "zh").stdout
    assert "+41441234567 (044 123 45 67)" in shown and "0.00 CHF" in shown
    # a caller's national number now means Switzerland
    cli("card", "create", "--project", "zh", "--minutes", "1")
    bound = cli.json("card", "bind", "1", "079 123 45 67", "--yes")
    assert bound["number"] == "+41791234567"


def test_national_access_numbers_need_a_region(cli: Cli) -> None:
    cli("db", "migrate")  # an existing database: the refusal must leave it as it was
    assert cli.fails("project", "create", "zh", "--number", "0441234567", "--service", "PJSIP/100@office") == (
        "InvalidInput: 0441234567 is a national number: give --region (CH, DE, AT …) or write it in E.164 (+41…)")
    # with an E.164 number first, national ones mean its country
    data = cli.json("project", "create", "zh", "--number", "0041441234567", "--number", "0441234568",
                    "--service", "PJSIP/100@office")
    assert [n["e164"] for n in data["numbers"]] == ["+41441234567", "+41441234568"]


@pytest.mark.parametrize(("number", "message"), [
    ("+80012345678", "InvalidInput: +80012345678 belongs to no country: give --region (CH, DE, AT …)"),
    ("+12125550123", "InvalidInput: no default currency for region US: give --currency (e.g. EUR, CHF)"),
])
def test_no_region_or_no_currency_is_refused_in_one_line(cli: Cli, number: str, message: str) -> None:
    cli("db", "migrate")
    assert cli.fails("project", "create", "p", "--number", number, "--service", "PJSIP/100@office") == message


def test_explicit_region_and_currency_still_win(cli: Cli) -> None:
    data = cli.json("project", "create", "p", "--number", "+41441234567", "--region", "de", "--currency", "eur",
                    "--service", "PJSIP/100@office")
    assert (data["region"], data["currency"]) == ("DE", "EUR")
    # a second project defaults to the account's currency (one account, one currency)
    other = cli.json("project", "create", "q", "--number", "+41441234568", "--service", "PJSIP/100@office")
    assert (other["region"], other["currency"]) == ("CH", "EUR")


def test_update_region_reinterprets_no_stored_number(cli: Cli) -> None:
    # As an old database has it: a Swiss access number typed nationally under the old DE default.
    cli("project", "create", "zh", "--number", "0441234567", "--region", "DE", "--service", "PJSIP/100@office")
    [(project_id,)] = query(cli.db, "SELECT id FROM projects WHERE name = 'zh'")
    query(cli.db, "INSERT INTO blacklist (project_id, pattern, direction, reason, created_ms, added_by)"
                  " VALUES (?, '0795556677', 'inbound', 'old', 0, 'old')", project_id)
    result = cli("project", "update", "zh", "--region", "CH")
    assert "  region: DE -> CH" in result.stdout
    assert result.stderr.splitlines() == [
        "note: blocked 0795556677 kept its meaning +49795556677 (DE); national numbers typed from now on mean CH",
        "note: access number +49441234567 stays a DE number (numbers are kept in E.164); if it was typed for"
        " the wrong region: --remove-number +49441234567 --add-number <its national form>"]
    data = cli.json("project", "show", "zh")
    assert [n["e164"] for n in data["numbers"]] == ["+49441234567"]
    assert [(e["pattern"], e["stored"]) for e in cli.json("blacklist", "list", "--project", "zh")] == \
        [("+49795556677", "+49795556677")]
    # the fix the note names, in one command
    fixed = cli.json("project", "update", "zh", "--remove-number", "+49441234567", "--add-number", "0441234567")
    assert [n["e164"] for n in fixed["numbers"]] == ["+41441234567"]
