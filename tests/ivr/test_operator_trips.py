"""Issue 12: what a new operator trips over. Each test runs ``ivr`` as a real process
against real SQLite files and sockets, as an operator would, and asks for one line on
stderr, the right exit code and no hang (a hang fails on the generous timeout)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TIMEOUT_S = 120  # a loaded machine is slow; a hang is forever


def ivr(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    full_env.update(env or {})
    try:
        return subprocess.run([sys.executable, "-m", "ivr.cli", *args], capture_output=True, text=True,
                              timeout=TIMEOUT_S, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"ivr {' '.join(args)} did not exit: {exc.stderr!r}") from None


def one_line(result: subprocess.CompletedProcess[str], code: int, starts: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(starts), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def corrupt(tmp_path: Path) -> Path:
    db = tmp_path / "corrupt.sqlite3"
    db.write_bytes(b"this is not SQLite at all " * 200)
    return db


@pytest.mark.parametrize("command", [["card", "list"], ["account", "show"],
                                     ["card", "create", "--project", "p", "--minutes", "1"]])
def test_corrupt_database_is_one_line_and_exits(corrupt: Path, command: list[str]) -> None:
    line = one_line(ivr("--database", str(corrupt), *command), 1, "StoreUnavailable:")
    assert "not a database" in line


def test_serve_on_a_corrupt_database_is_one_line_and_exits(corrupt: Path) -> None:
    result = ivr("--database", str(corrupt), "serve", "--metrics-port", "0")
    one_line(result, 1, "StoreUnavailable:")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_serve_on_a_busy_port_names_it_and_exits(tmp_path: Path, busy_port: int) -> None:
    db = str(tmp_path / "ivr.sqlite3")
    line = one_line(ivr("--database", db, "serve", "--port", str(busy_port), "--metrics-port", "0"), 1,
                    "BindError:")
    assert f"FastAGI on 127.0.0.1:{busy_port}" in line
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        agi_port = free.getsockname()[1]
    line = one_line(ivr("--database", db, "serve", "--port", str(agi_port), "--metrics-port", str(busy_port)),
                    1, "BindError:")
    assert f"metrics on 127.0.0.1:{busy_port}" in line
    line = one_line(ivr("--database", db, "serve", "--host", "192.0.2.1", "--metrics-port", "0"), 1,
                    "BindError:")
    assert "192.0.2.1:4573" in line


def test_empty_database_setting_is_refused(tmp_path: Path) -> None:
    result = ivr("project", "create", "p", "--number", "+41441234567", "--region", "CH",
                 "--service", "PJSIP/100", cwd=tmp_path, env={"IVR_DATABASE": ""})
    one_line(result, 2, "SettingsError: setting 'database': the database setting is empty")
    assert list(tmp_path.iterdir()) == []


def test_read_commands_on_a_missing_database_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "x.sqlite3"
    for command in (["card", "list"], ["account", "show"], ["cdr", "list"]):
        one_line(ivr("--database", str(missing), *command), 1, "InvalidDatabase: there is no database at")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_project_create_leaves_no_database_behind(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite3"
    one_line(ivr("--database", str(db), "project", "create", "x", "--number", "0441234567", "--service",
                 "Local/1@s"), 1, "InvalidInput: 0441234567 is a national number")
    assert list(tmp_path.iterdir()) == []      # no file, no -wal, no -shm
    made = ivr("--database", str(db), "project", "create", "x", "--number", "+41441234567", "--service", "Local/1@s")
    assert made.returncode == 0, made.stderr
    # A refusal on a database that holds a project removes nothing, of course.
    one_line(ivr("--database", str(db), "project", "create", "y", "--number", "0441234568", "--service",
                 "Local/1@s"), 1, "InvalidInput: 0441234568 is a national number")
    listed = ivr("--database", str(db), "project", "list").stdout.splitlines()[2:]
    assert [line.split()[0] for line in listed] == ["x"]


def test_bad_log_level_is_refused_by_serve_and_config_show(tmp_path: Path) -> None:
    env = {"IVR_LOG_LEVEL": "LOUD"}
    db = str(tmp_path / "ivr.sqlite3")
    one_line(ivr("--database", db, "config", "show", env=env), 2, "SettingsError: setting 'log_level'")
    one_line(ivr("--database", db, "serve", env=env), 2, "SettingsError: setting 'log_level'")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    db = tmp_path / "shop.sqlite3"
    created = ivr("--database", str(db), "project", "create", "test1", "--number", "+41441234567", "--region",
                  "CH", "--service", "PJSIP/100@office", "--currency", "CHF", "--price-per-minute", "0.50")
    assert created.returncode == 0, created.stderr
    bought = ivr("--database", str(db), "card", "create", "--project", "test1", "--minutes", "5")
    assert bought.returncode == 0, bought.stderr
    return db


def test_latin1_csv_is_one_line(shop: Path) -> None:
    csv = shop.parent / "latin1.csv"
    csv.write_bytes("pattern,reason\n0791234567,M\u00fcller\n".encode("latin-1"))
    one_line(ivr("--database", str(shop), "blacklist", "import", str(csv), "--project", "test1"), 1,
             "CliError: ")


def test_a_currency_without_two_decimals_is_refused_not_misbilled(tmp_path: Path) -> None:
    """Item 12, 'with the currency's decimals': amounts are hundredths everywhere, so a
    yen or dinar project would read 'pay 1.50' wrongly; it is refused before anything exists."""
    db = tmp_path / "x.sqlite3"
    for currency, decimals in (("JPY", 0), ("KWD", 3)):
        one_line(ivr("--database", str(db), "project", "create", "x", "--number", "+41441234567", "--service",
                     "Local/1@s", "--currency", currency), 1,
                 f"InvalidInput: currency {currency} has {decimals} decimals")
    assert list(tmp_path.iterdir()) == []
    made = ivr("--database", str(db), "project", "create", "x", "--number", "+41441234567", "--service",
               "Local/1@s", "--currency", "GBP")
    assert made.returncode == 0, made.stderr
