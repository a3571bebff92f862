"""Helpers the CLI tests share (no tests here): run ``ivr …`` as an operator would,
against a database in tmp_path, and look at the database behind it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ivr.cli import main
from rating.store.sqlite import SqliteStore

PROJECT = ["project", "create", "test1", "--number", "0441234567", "--region", "CH",
           "--service", "PJSIP/100@office", "--price-per-minute", "0.50", "--currency", "CHF"]


@dataclass
class Cli:
    db: Path

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> Result:
        result = CliRunner().invoke(main, ["--database", str(self.db), *args], input=input,
                                    catch_exceptions=False)
        assert result.exit_code == code, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str, input: str | None = None) -> Any:
        return json.loads(self(*args, "--json", input=input).stdout)

    def fails(self, *args: str, code: int = 1, input: str | None = None) -> str:
        """Run a command that must fail; returns its one stderr line (besides a confirmation
        question), having checked that nothing in the database changed."""
        before = snapshot(self.db)
        result = self(*args, input=input, code=code)
        lines = [line for line in result.stderr.splitlines() if line.strip() and "[y/N]" not in line]
        assert len(lines) == 1, result.stderr
        assert snapshot(self.db) == before
        return lines[0]

    def store(self) -> SqliteStore:
        return SqliteStore(self.db)

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)


def snapshot(db: Path) -> dict[str, list[Any]]:
    """Every row of every table (a failed command must leave this unchanged)."""
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    finally:
        con.close()


def query(db: Path, sql: str, *params: Any) -> list[Any]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(sql, params).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "ivr.sqlite3")


@pytest.fixture
def project(cli: Cli) -> dict[str, Any]:
    """Project test1: Zürich access number, CHF 0.50 a minute."""
    return cli.json(*PROJECT)  # type: ignore[no-any-return]
