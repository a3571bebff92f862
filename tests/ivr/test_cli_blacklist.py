"""``ivr blacklist …``: per project or global, inbound and outbound, x patterns, who and
why, and CSV import/export that checks every row before changing anything."""

from __future__ import annotations

import csv
import getpass
import io
from pathlib import Path
from typing import Any

import pytest

from .test_cli_helpers import Cli

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli and project fixtures

ENTRY_KEYS = {"pattern", "scope", "project", "direction", "reason", "added_by", "added_at", "stored"}


def test_add_project_and_global_entries(cli: Cli, project: dict[str, Any]) -> None:
    data = cli.json("blacklist", "add", "04412345x", "--project", "test1", "--reason", "pranks")
    assert set(data) == ENTRY_KEYS
    assert {k: data[k] for k in ENTRY_KEYS - {"added_at"}} == {
        "pattern": "+414412345x", "scope": "project", "project": "test1", "direction": "inbound",
        "reason": "pranks", "added_by": getpass.getuser(), "stored": "+414412345x"}
    glob = cli.json("blacklist", "add", "0900 .", "--global", "--region", "ch", "--direction", "outbound",
                    "--by", "hans")
    assert (glob["pattern"], glob["scope"], glob["project"], glob["added_by"]) == ("+41900.", "global", None, "hans")
    out = cli("blacklist", "add", "+4190X.", "--global").stdout
    assert out == "blocked callers +4190x. in every project (global)\n"


@pytest.mark.parametrize(("pattern", "message"), [
    ("04a", "InvalidInput: not a number pattern: '04a'"),
    ("0.9", "InvalidInput: not a number pattern: '0.9'"),
    ("+0441234567", "InvalidInput: pattern '+0441234567' can never match: no country code starts with 0"),
    ("0041x", "InvalidInput: pattern '0041x' "),
    ("+1234567890123456", "InvalidInput: pattern '+1234567890123456' can never match: a phone number has"),
    ("x.", "InvalidInput: pattern 'x.' is neither national (with the trunk prefix 0, e.g. 0x.) nor international"),
    ("4.", "InvalidInput: pattern '4.' is neither national (with the trunk prefix 0, e.g. 04.) nor international"
           " (+4. or 004.)"),
    ("0.", "InvalidInput: pattern '0.' (+41.) blocks every number of +41 (CH); add --whole-country"),
    ("+4.", "InvalidInput: pattern '+4.' blocks every number of +40 (RO), +41 (CH), +43 (AT), +44 (GB) and"),
    ("00.", "InvalidInput: pattern '00.' (+.) would block every number"),
    ("+x.", "InvalidInput: pattern '+x.' would block every number"),
])
def test_patterns_that_cannot_or_would_always_match_are_refused(cli: Cli, project: dict[str, Any],
                                                                 pattern: str, message: str) -> None:
    if pattern == "0041x":  # a valid block: accepted
        cli("blacklist", "add", pattern, "--global")
        return
    assert cli.fails("blacklist", "add", pattern, "--project", "test1").startswith(message)


def test_scope_is_required_and_duplicates_refused(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.fails("blacklist", "add", "0900.", code=2).startswith("UsageError: give either --project NAME")
    assert cli.fails("blacklist", "add", "0900.", "--global", "--project", "test1", code=2).startswith(
        "UsageError: give either")
    assert cli.fails("blacklist", "add", "0900.", "--project", "nope") == "NotFound: no project 'nope'"
    cli("blacklist", "add", "0900.", "--global", "--region", "CH")
    assert cli.fails("blacklist", "add", "+41900.", "--global") == \
        "AlreadyExists: +41900. (inbound) is already blocked in the global list"
    cli("blacklist", "add", "0900.", "--global", "--region", "CH", "--direction", "outbound")
    cli("blacklist", "add", "0900.", "--project", "test1")


def test_list_all_project_global_and_by_direction(cli: Cli, project: dict[str, Any]) -> None:
    cli("project", "create", "other", "--number", "0449999999", "--region", "CH", "--service", "PJSIP/1@x",
        "--currency", "CHF")
    cli("blacklist", "add", "0900.", "--global", "--region", "CH", "--reason", "premium")
    cli("blacklist", "add", "04412345x", "--project", "test1")
    cli("blacklist", "add", "0906.", "--project", "other", "--direction", "outbound")
    assert [e["pattern"] for e in cli.json("blacklist", "list")] == ["+41900.", "+414412345x", "+41906."]
    assert [e["pattern"] for e in cli.json("blacklist", "list", "--project", "test1")] == \
        ["+41900.", "+414412345x"]
    assert [e["pattern"] for e in cli.json("blacklist", "list", "--global")] == ["+41900."]
    assert [e["pattern"] for e in cli.json("blacklist", "list", "--direction", "outbound")] == ["+41906."]
    lines = cli("blacklist", "list").stdout.splitlines()
    assert lines[0].split() == ["PATTERN", "SCOPE", "DIRECTION", "REASON", "BY", "ADDED"]
    assert lines[2].split()[:4] == ["+41900.", "(global)", "inbound", "premium"]
    assert lines[2].index("inbound") == lines[3].index("inbound") == lines[0].index("DIRECTION")


def test_remove_asks_first(cli: Cli, project: dict[str, Any]) -> None:
    cli("blacklist", "add", "0900.", "--global", "--region", "CH", "--reason", "premium")
    assert cli.fails("blacklist", "remove", "+41900.", "--global", input="n\n") == "Cancelled: nothing changed"
    assert cli.fails("blacklist", "remove", "0900.", "--project", "test1", "--yes") == \
        "NotFound: +41900. (inbound) is not blocked in project test1"
    data = cli.json("blacklist", "remove", "0900.", "--global", "--region", "CH", input="y\n")
    assert (data["pattern"], data["reason"]) == ("+41900.", "premium")
    assert cli.json("blacklist", "list") == []


def test_export_then_import_into_another_project(cli: Cli, project: dict[str, Any], tmp_path: Path) -> None:
    cli("project", "create", "other", "--number", "0449999999", "--region", "CH", "--service", "PJSIP/1@x",
        "--currency", "CHF")
    cli("blacklist", "add", "04412345x", "--project", "test1", "--reason", "pranks, at night", "--by", "erika")
    cli("blacklist", "add", "0906.", "--project", "test1", "--direction", "outbound")
    text = cli("blacklist", "export", "--project", "test1").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["pattern"], r["direction"], r["reason"], r["added_by"], r["scope"]) for r in rows] == [
        ("+414412345x", "inbound", "pranks, at night", "erika", "test1"),
        ("+41906.", "outbound", "", getpass.getuser(), "test1")]
    exported = cli.json("blacklist", "export", "--project", "test1")
    assert [(e["pattern"], e["scope"], e["project"]) for e in exported] == [
        ("+414412345x", "project", "test1"), ("+41906.", "project", "test1")]
    assert set(exported[0]) == ENTRY_KEYS
    path = tmp_path / "blocked.csv"
    cli("blacklist", "export", str(path), "--project", "test1")
    assert cli.fails("blacklist", "export", str(path), "--project", "test1").endswith(
        "exists; add --yes to overwrite it")
    data = cli.json("blacklist", "import", str(path), "--project", "other")
    assert data == {"scope": "project", "project": "other", "added": 2, "already_there": 0, "removed": 0,
                    "replaced": False}
    again = cli.json("blacklist", "import", str(path), "--project", "other")
    assert (again["added"], again["already_there"]) == (0, 2)
    imported = cli.json("blacklist", "list", "--project", "other")
    assert [(e["pattern"], e["direction"], e["reason"], e["added_by"]) for e in imported] == [
        ("+414412345x", "inbound", "pranks, at night", "erika"), ("+41906.", "outbound", "", getpass.getuser())]


def test_import_checks_every_row_first(cli: Cli, project: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("pattern,direction,reason\n0901.,inbound,spam\n0902.,inbound,\n09x3,sideways,\n")
    assert cli.fails("blacklist", "import", str(bad), "--global", "--region", "CH") == \
        f"InvalidInput: {bad} line 4: direction 'sideways': inbound (callers) or outbound (destinations)"
    bad.write_text("pattern\n0901.\n+0441\n")
    assert cli.fails("blacklist", "import", str(bad), "--global", "--region", "CH").startswith(
        f"InvalidInput: {bad} line 3: pattern '+0441' can never match")
    bad.write_text("pattern\n0901.\n0901.\n")
    assert cli.fails("blacklist", "import", str(bad), "--global", "--region", "CH") == \
        f"InvalidInput: {bad} line 3: +41901. (inbound) is already on line 2"
    bad.write_text("number,reason\n0901.,x\n")
    assert cli.fails("blacklist", "import", str(bad), "--global").startswith(
        f"InvalidInput: {bad} line 1: the header needs a 'pattern' column")
    bad.write_text("pattern\n")
    assert cli.fails("blacklist", "import", str(bad), "--global") == f"InvalidInput: {bad}: no entries"
    assert cli.fails("blacklist", "import", str(tmp_path / "missing.csv"), "--global").startswith(
        "CliError: ")


def test_import_reads_excel_csv_with_semicolons_and_bom(cli: Cli, project: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffpattern;direction;reason\n0901.;inbound;Spam; Werbung\n\n0041 44 123 45 6x;;\n"
                     .encode())
    assert cli.fails("blacklist", "import", str(path), "--global").startswith(
        f"InvalidInput: {path} line 2: more fields than columns")
    path.write_bytes("\ufeffpattern;direction;reason\n0901.;inbound;Spam\n\n0041 44 123 45 6x;;\n".encode())
    assert cli.json("blacklist", "import", str(path), "--global", "--region", "CH")["added"] == 2
    assert [e["pattern"] for e in cli.json("blacklist", "list")] == ["+4144123456x", "+41901."]


def test_import_replace_asks_and_swaps_the_whole_list(cli: Cli, project: dict[str, Any], tmp_path: Path) -> None:
    cli("blacklist", "add", "0900.", "--project", "test1")
    cli("blacklist", "add", "0901.", "--project", "test1")
    cli("blacklist", "add", "0906.", "--global", "--region", "CH")
    path = tmp_path / "new.csv"
    path.write_text("pattern\n0901.\n0902.\n")
    assert cli.fails("blacklist", "import", str(path), "--project", "test1", "--replace",
                     input="n\n") == "Cancelled: nothing changed"
    result = cli("blacklist", "import", str(path), "--project", "test1", "--replace", input="y\n")
    assert "Replace the 2 entries of project test1 with the 2 of" in result.stderr
    assert "2 added, 0 already there, 2 old entries removed" in result.stdout
    assert [e["pattern"] for e in cli.json("blacklist", "list")] == ["+41906.", "+41901.", "+41902."]


def test_import_from_stdin(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.json("blacklist", "import", "-", "--global", "--region", "CH", input="pattern\n0901.\n")["added"] == 1
    assert cli.fails("blacklist", "import", "-", "--global", "--replace", input="pattern\n0902.\n",
                     code=2).startswith("UsageError: the list comes from stdin")
