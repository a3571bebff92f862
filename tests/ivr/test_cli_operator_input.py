"""What a new operator types wrong (issue 12, items 4, 12, 13, 14): one line naming the
mistake, exit 1 (2 for a usage error), nothing changed — and no empty database created
by a command that only reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_cli_helpers import PROJECT, Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path / "ivr.sqlite3")
    c(*PROJECT)
    c("card", "create", "--project", "test1", "--minutes", "10", "--yes")
    return c


@pytest.mark.parametrize("command", [
    ["card", "list"], ["account", "show"], ["cdr", "list"], ["blacklist", "list", "--global"],
    ["card", "create", "--project", "test1", "--minutes", "10", "--yes"], ["account", "pay", "10.00"],
])
def test_a_database_that_does_not_exist_is_named_and_not_created(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.sqlite3"
    line = Cli(missing).fails(*command)
    assert line == (f"InvalidDatabase: there is no database at {missing} (check the database setting,"
                    " or start one with: ivr project create …)")
    assert not (tmp_path / "no").exists()


def test_project_create_still_starts_a_new_database(tmp_path: Path) -> None:
    c = Cli(tmp_path / "new.sqlite3")
    c(*PROJECT)
    assert c.json("project", "list")


@pytest.mark.parametrize("amount", ["1,500", "1e9", "\uff15", "1e400", "-5", "0.505", "1'500", "nan",
                                    "1 000", "9999999999"])
def test_payments_accept_one_unambiguous_syntax(cli: Cli, amount: str) -> None:
    line = cli.fails("account", "pay", amount)
    assert line.startswith("InvalidInput: AMOUNT: ") and repr(amount) in line


@pytest.mark.parametrize(("amount", "cents"), [("250", 25000), ("250.00", 25000), ("0.5", 50), ("0,50", 50),
                                               ("999999999.99", 99999999999)])
def test_payments_in_that_syntax_are_recorded_exactly(cli: Cli, amount: str, cents: int) -> None:
    before = cli.json("account", "show")
    cli("account", "pay", amount)
    after = cli.json("account", "show")
    assert before["owed_cents"] - after["owed_cents"] == cents


@pytest.mark.parametrize(("args", "code"), [
    (["account", "limits", "--lock", "99999999999999999999"], 1),
    (["card", "show", "99999999999999999999999"], 1),
    (["card", "show", "1", "--calls", "-1"], 2),
    (["card", "expire", "1", "--on", "9999-12-31", "--yes"], 1),
    (["cdr", "list", "--to", "9999-12-31"], 1),
    (["cdr", "list", "--from", "0001-01-01"], 1),
    (["project", "create", "p2", "--number", "+41449999999", "--service", "PJSIP/1",
      "--ring-timeout", "99999999999999999999"], 1),
    (["project", "create", "p3", "--number", "+41449999998", "--service", "PJSIP/1",
      "--minimum", "999999999"], 1),
    (["call", "--from", "1", "--to", "2", "--talk", "-5"], 2),
    (["call", "--from", "1", "--to", "2", "--talk", "nan"], 2),
    (["call", "--from", "1", "--to", "2", "--answer-after", "-1"], 2),
    (["call", "--from", "1", "--to", "2", "--port", "99999"], 2),
    (["blacklist", "import", "nosuch.csv", "--project", "test1"], 1),
])
def test_out_of_range_input_is_one_line(cli: Cli, args: list[str], code: int) -> None:
    line = cli.fails(*args, code=code)
    assert "Error" in line.split(":")[0] or line.split(":")[0] in ("NotFound", "InvalidInput", "BadParameter",
                                                                   "CliError")
    assert "Overflow" not in line and "year 0" not in line


def test_a_latin1_csv_is_named_with_its_line(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "blocked.csv"
    path.write_bytes("pattern,reason\n0791234567,M\xfcller\n".encode("latin-1"))
    line = cli.fails("blacklist", "import", str(path), "--project", "test1")
    assert line == f"CliError: {path}: not UTF-8 text (line 2); save it as 'CSV UTF-8' and import again"


def _ivr(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivr.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.mark.parametrize("args", [[], ["card"], ["blacklist"]])
def test_a_group_alone_shows_its_help_without_an_error_name(args: list[str]) -> None:
    result = _ivr(*args)
    assert result.returncode == 2
    assert "Usage:" in result.stdout and "Commands:" in result.stdout
    assert "NoArgsIsHelpError" not in result.stdout + result.stderr


def test_an_unknown_log_level_is_refused_by_serve_as_by_config_show(tmp_path: Path) -> None:
    env = {"IVR_LOG_LEVEL": "LOUD", "IVR_DATABASE": str(tmp_path / "x.sqlite3")}
    for args in (["serve", "--port", "45731", "--metrics-port", "0"], ["config", "show"]):
        result = _ivr(*args, env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "SettingsError: setting 'log_level': 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"]
    assert not (tmp_path / "x.sqlite3").exists()
