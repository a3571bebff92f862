"""``ivr pin-failures``, the guessing figure of ``project show`` and the warning of ``card create``."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from .test_cli_helpers import Cli

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli and project fixtures


def add_failures(cli: Cli, line: str, n: int, project_id: int = 1) -> None:
    now = int(time.time() * 1000)
    with sqlite3.connect(cli.db) as db:
        db.executemany("INSERT INTO pin_failures (project_id, caller_key, at_ms) VALUES (?,?,?)",
                       [(project_id, line, now - i) for i in range(n)])


def test_list_and_clear_wrong_pins(cli: Cli, project: dict[str, Any]) -> None:
    add_failures(cli, "+41791234567", 12)
    add_failures(cli, "anonymous", 3)
    data = cli.json("pin-failures", "list")
    assert [(r["line"], r["failures"], r["line_locked"]) for r in data["lines"]] == [
        ("+41791234567", 12, True), ("anonymous", 3, False)]
    assert (data["line_cap"], data["project_cap"], data["window_s"]) == (10, 1000, 3600)
    assert [r["line"] for r in cli.json("pin-failures", "list", "--line", "079 123 45 67")["lines"]] == [
        "+41791234567"]
    out = cli("pin-failures", "list", "--project", "test1").stdout
    assert "+41791234567" in out and "yes" in out
    assert cli.fails("pin-failures", "clear", code=2).startswith("UsageError: ")
    assert cli.fails("pin-failures", "clear", "--line", "0791234567", input="n\n").startswith("Cancelled")
    assert cli.json("pin-failures", "clear", "--line", "0791234567", "--yes")["cleared"] == 12
    assert [r["line"] for r in cli.json("pin-failures", "list")["lines"]] == ["anonymous"]
    assert cli.json("pin-failures", "clear", "--project", "test1", "--yes")["cleared"] == 3
    assert cli("pin-failures", "list").stdout == "no wrong PINs in the window\n"


def test_project_show_gives_the_guessing_figure(cli: Cli) -> None:
    cli("project", "create", "short", "--number", "+41440000001", "--service", "PJSIP/1@x", "--pin-length", "6",
        "--currency", "CHF", "--region", "CH")
    cli("project", "create", "long", "--number", "+41440000002", "--service", "PJSIP/1@x", "--currency", "CHF",
        "--region", "CH")
    assert cli.json("project", "show", "long")["pin_length"] == 12  # the new default
    assert cli.json("project", "show", "short")["guessing"]["expected_s_to_hit"] is None  # no card yet
    created = cli("card", "create", "--project", "short", "--minutes", "1")
    assert "warning: with 1 active cards, 6-digit PINs fall to guessing" in created.stderr
    g = cli.json("project", "show", "short")["guessing"]
    # (10^6 + 1) / 2 draws at 1000 per hour
    assert (g["expected_s_to_hit"], g["too_short"], g["active_cards"]) == ((10**6 + 1) * 3600 // 2000, True, 1)
    assert "TOO SHORT" in cli("project", "show", "short").stdout
    quiet = cli("card", "create", "--project", "long", "--minutes", "1")
    assert "warning" not in quiet.stderr
    g = cli.json("project", "show", "long")["guessing"]
    assert g["too_short"] is False and g["expected_s_to_hit"] > 365 * 86400
    assert "years at the cap of 1000 wrong PINs per 1.0 hours" in cli("project", "show", "long").stdout


def test_the_project_chooses_whether_a_full_card_evicts(cli: Cli, project: dict[str, Any]) -> None:
    assert cli.json("project", "show", "test1")["when_bindings_full"] == "refuse"
    out = cli("project", "update", "test1", "--when-bindings-full", "evict").stdout
    assert "when bindings full: a PIN call from another line is not bound -> a PIN call drops" in out
    assert cli.json("project", "show", "test1")["when_bindings_full"] == "evict"
