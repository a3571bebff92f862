"""``ivr cdr list|report``: filters, totals, revenue in integer cents, local months, CSV
and the PNG chart."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rating.models import Cdr
from rating.store.sqlite import SqliteStore

from .test_cli_helpers import Cli, query

pytest_plugins = ["tests.ivr.test_cli_helpers"]  # the cli and project fixtures

CDR_KEYS = {"uniqueid", "project", "card", "caller", "caller_e164", "dialled", "destination", "start", "answer",
            "end", "talk_s", "debited_s", "outcome", "hangup_side", "call_type", "route", "leg", "zone",
            "number_type", "factor_pm", "quota_used_s", "price_per_minute_cents", "currency"}
# How each call was routed (issue 11): call type, zone
ROUTED = {"c1": ("service", "internal"), "c2": ("forwarded", "eu"), "c3": ("service", "internal"),
          "c4": ("fallback", "internal"), "c5": ("refused", "")}
ROW_KEYS = {"calls", "answered", "talk_s", "debited_s", "revenue_cents"}
A, B = "+41791234567", "+41797654321"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# (uniqueid, start UTC, card, caller, outcome, talk, debited)
CALLS = [
    ("c1", "2026-10-15T10:00:00", 1, A, "ANSWERED", 90, 90),
    ("c2", "2026-10-31T23:30:00", 1, A, "ANSWERED", 30, 60),      # 1 November 00:30 in Zürich
    ("c3", "2026-11-05T12:00:00", 2, B, "BUSY", 0, 0),
    ("c4", "2026-11-20T08:00:00", 2, B, "ANSWERED", 600, 600),
    ("c5", "2026-11-21T08:00:00", None, "anonymous", "PIN_FAILED", 0, 0),
]


@pytest.fixture
def zurich(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Operators' dates are local dates: run these tests in Zürich's time zone."""
    monkeypatch.setenv("TZ", "Europe/Zurich")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def calls(cli: Cli, project: dict[str, Any], zurich: None) -> None:
    cli("card", "create", "--project", "test1", "--minutes", "10")
    cli("card", "create", "--project", "test1", "--minutes", "20")

    async def write() -> None:
        async with SqliteStore(cli.db) as store:
            for uid, start, card, caller, outcome, talk, debited in CALLS:
                begin = ms(start)
                await store.write_cdr(Cdr(
                    uniqueid=uid, project_id=1, card_id=card, caller_raw=caller,
                    caller_e164=caller if caller.startswith("+") else None, dialled="+41441234567",
                    destination="PJSIP/100@office" if talk else None, start_ms=begin,
                    answer_ms=begin + 5000 if talk else None, end_ms=begin + 5000 + talk * 1000, talk_s=talk,
                    debited_s=debited, outcome=outcome, hangup_side="caller", call_type=ROUTED[uid][0],
                    zone=ROUTED[uid][1], factor_pm=1300 if ROUTED[uid][1] == "eu" else 1000))
    cli.run(write())


def uids(data: list[dict[str, Any]]) -> list[str]:
    return [c["uniqueid"] for c in data]


def test_list_json_shape_and_order(cli: Cli, calls: None) -> None:
    data = cli.json("cdr", "list")
    assert uids(data) == ["c1", "c2", "c3", "c4", "c5"]
    assert set(data[0]) == CDR_KEYS
    assert (data[0]["card"], data[0]["project"], data[0]["start"]) == ("1", "test1", "2026-10-15T10:00:00Z")
    assert data[4]["card"] is None
    assert uids(cli.json("cdr", "list", "--limit", "2")) == ["c4", "c5"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--from", "2026-11-01", "--to", "2026-11-20"], ["c2", "c3", "c4"]),   # local days, --to included
    (["--from", "01.11.2026"], ["c2", "c3", "c4", "c5"]),
    (["--to", "2026-10-31"], ["c1"]),
    (["--number", "079765432x"], ["c3", "c4"]),
    (["--number", "079 123 45 67"], ["c1", "c2"]),
    (["--number", "+41441234567"], ["c1", "c2", "c3", "c4", "c5"]),          # the access number dialled
    (["--outcome", "busy"], ["c3"]),
    (["--outcome", "answered", "--outcome", "pin_failed"], ["c1", "c2", "c4", "c5"]),
    (["--card", "2"], ["c3", "c4"]),
    (["--project", "test1", "--card", "1", "--from", "2026-11-01"], ["c2"]),
    (["--type", "service"], ["c1", "c3"]),
    (["--type", "fallback", "--type", "forwarded"], ["c2", "c4"]),
    (["--zone", "eu"], ["c2"]),
    (["--zone", "internal", "--outcome", "answered"], ["c1", "c4"]),
])
def test_list_filters(cli: Cli, calls: None, args: list[str], expected: list[str]) -> None:
    assert uids(cli.json("cdr", "list", *args)) == expected


def test_list_table(cli: Cli, calls: None) -> None:
    lines = cli("cdr", "list", "--card", "1").stdout.splitlines()
    assert lines[0].split()[:4] == ["START", "PROJECT", "CARD", "CALLER"]
    assert lines[2].startswith("2026-10-15 12:00:00  test1")      # local time in the table
    assert "0:01:30" in lines[2]


def test_report_by_month_uses_local_months_and_prices_debited_time(cli: Cli, calls: None) -> None:
    data = cli.json("cdr", "report", "--by", "month")
    assert set(data) == {"by", "currency", "rows", "totals"}
    assert (data["by"], data["currency"]) == ("month", "CHF")
    assert data["rows"] == [
        {"key": "2026-10", "calls": 1, "answered": 1, "talk_s": 90, "debited_s": 90, "revenue_cents": 75},
        {"key": "2026-11", "calls": 4, "answered": 2, "talk_s": 630, "debited_s": 660, "revenue_cents": 550}]
    assert data["totals"] == {"calls": 5, "answered": 3, "talk_s": 720, "debited_s": 750, "revenue_cents": 625}
    lines = cli("cdr", "report").stdout.splitlines()
    assert lines[0].split() == ["MONTH", "CALLS", "ANSWERED", "TALK", "DEBITED", "REVENUE"]
    assert lines[-1].split() == ["total", "5", "3", "0:12:00", "0:12:30", "6.25", "CHF"]
    assert set(lines[-2]) <= {"-", " "}
    assert len({len(line) for line in lines}) == 1           # right-aligned numbers: one width


def test_report_by_number_card_outcome(cli: Cli, calls: None) -> None:
    by_number = cli.json("cdr", "report", "--by", "number")
    assert [(r["key"], r["calls"], r["debited_s"]) for r in by_number["rows"]] == [
        (B, 2, 600), (A, 2, 150), ("anonymous", 1, 0)]
    by_card = cli.json("cdr", "report", "--by", "card", "--from", "2026-11-01")
    assert [(r["key"], r["calls"]) for r in by_card["rows"]] == [("1", 1), ("2", 2), ("-", 1)]
    by_outcome = cli.json("cdr", "report", "--by", "outcome")
    assert {r["key"]: r["calls"] for r in by_outcome["rows"]} == {"ANSWERED": 3, "BUSY": 1, "PIN_FAILED": 1}
    assert cli.json("cdr", "report", "--by", "access")["rows"][0]["key"] == "+41441234567"
    assert set(by_number["rows"][0]) == ROW_KEYS | {"key"}


def test_report_by_type_and_zone(cli: Cli, calls: None, tmp_path: Path) -> None:
    by_type = cli.json("cdr", "report", "--by", "type")
    assert {r["key"]: r["calls"] for r in by_type["rows"]} == {"service": 2, "forwarded": 1, "fallback": 1,
                                                              "refused": 1}
    by_zone = cli.json("cdr", "report", "--by", "zone", "--type", "service", "--type", "forwarded")
    assert {r["key"]: r["calls"] for r in by_zone["rows"]} == {"internal": 2, "eu": 1}
    lines = cli("cdr", "report", "--by", "zone").stdout.splitlines()
    assert lines[0].split()[0] == "ZONE"
    cli("cdr", "report", "--by", "type", "--csv", str(tmp_path / "t.csv"), "--chart", str(tmp_path / "t.png"))
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("type,calls,")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listed = list(csv.DictReader(io.StringIO(cli("cdr", "list", "--csv", "-").stdout)))
    assert [(r["call_type"], r["zone"], r["factor_pm"]) for r in listed][:2] == [
        ("service", "internal", "1000"), ("forwarded", "eu", "1300")]
    assert cli.fails("cdr", "list", "--type", "sometimes", code=2).startswith(
        "BadParameter: Invalid value for '--type'")
    table_head = cli("cdr", "list").stdout.splitlines()[0].split()
    assert table_head[6:8] == ["TYPE", "ZONE"]


def test_report_csv_and_chart(cli: Cli, calls: None, tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    chart = tmp_path / "minutes.png"
    result = cli("cdr", "report", "--by", "month", "--csv", str(path), "--chart", str(chart))
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["month"], r["revenue"], r["currency"]) for r in rows] == [
        ("2026-10", "0.75", "CHF"), ("2026-11", "5.50", "CHF"), ("total", "6.25", "CHF")]
    header = chart.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(header[16:20], "big")
    assert width >= 600
    assert "chart written to" in result.stderr
    assert cli.fails("cdr", "report", "--chart", str(chart)).endswith("exists; add --yes to overwrite it")
    cli("cdr", "report", "--by", "number", "--chart", str(chart), "--yes")
    assert cli.fails("cdr", "report", "--chart", str(tmp_path / "x.jpg"), code=2).startswith(
        "UsageError: --chart needs a file name ending in .png")
    assert cli.fails("cdr", "report", "--from", "2030-01-01", "--chart", str(tmp_path / "e.png")) == \
        "CliError: no calls match: no chart written"
    assert cli("cdr", "list", "--csv", "-", "--outcome", "busy").stdout.splitlines()[1].startswith(
        "2026-11-05T12:00:00Z,c3,test1,2,")


def test_bad_filters_are_one_line(cli: Cli, calls: None) -> None:
    assert cli.fails("cdr", "list", "--from", "yesterday").startswith("InvalidInput: not a date: 'yesterday'")
    assert cli.fails("cdr", "report", "--from", "2026-11-02", "--to", "2026-11-01") == \
        "InvalidInput: the period is empty: --from must be before --to"
    assert cli.fails("cdr", "list", "--card", "99") == "NotFound: no card 99"
    assert cli.fails("cdr", "list", "--number", "07a").startswith("InvalidInput: not a number pattern")
    assert cli.fails("cdr", "list", "--outcome", "vanished", code=2).startswith("BadParameter: ")
    assert cli.fails("cdr", "report", "--by", "week", code=2).startswith("BadParameter: ")
    assert cli.fails("cdr", "list", "--limit", "-1", code=2).startswith("UsageError: --limit")


def test_report_refuses_to_mix_currencies(cli: Cli, calls: None) -> None:
    # A database from before the account could hold projects in two currencies.
    query(cli.db, "INSERT INTO projects (name, service, ring_timeout_s, language, region, price_per_minute_cents,"
                  " currency, created_ms) VALUES ('euro', 'PJSIP/1@x', 30, 'de', 'DE', 40, 'EUR', 0)")
    query(cli.db, "INSERT INTO cdrs (uniqueid, project_id, caller_raw, dialled, start_ms, end_ms, talk_s,"
                  " debited_s, outcome, hangup_side) VALUES ('e1', 2, '+4930', '+4930', 0, 0, 0, 0, 'BUSY', 'x')")
    assert cli.fails("cdr", "report").startswith("CurrencyMismatch: the calls are priced in CHF and EUR")
    assert cli.json("cdr", "report", "--project", "test1")["totals"]["calls"] == 5


def test_no_calls(cli: Cli, project: dict[str, Any]) -> None:
    assert cli("cdr", "list").stdout == "no calls\n"
    assert cli.json("cdr", "report")["totals"] == {"calls": 0, "answered": 0, "talk_s": 0, "debited_s": 0,
                                                   "revenue_cents": 0}
