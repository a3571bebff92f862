"""Only our Asterisk talks to the engine; what a lying or hanging peer can do is bounded;
caller-controlled text stays inert; secrets stay private (issue 9). Real TCP against the
real engine: the fake Asterisk where Asterisk itself would talk, a raw socket where an
attacker does."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner

from ivr.app import Engine
from ivr.cli import main
from ivr.logs import configure
from ivr.metrics import Metrics
from ivr.settings import Settings, SettingsError
from rating.store.sqlite import SqliteStore

from .conftest import ACCESS, CALLER, Harness, make_harness


def sample(h: Harness, name: str, labels: dict[str, str] | None = None) -> float:
    return h.engine.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def env_block(**values: str) -> bytes:
    base = {"network": "yes", "network_script": "prepaid", "request": "agi://127.0.0.1/prepaid",
            "channel": "PJSIP/trunk-00000001", "language": "en", "type": "PJSIP", "uniqueid": "1795438347.1",
            "version": "22.10.1", "callerid": CALLER, "calleridname": "unknown", "callingpres": "0",
            "dnid": ACCESS, "context": "prepaid-in", "extension": ACCESS, "priority": "2",
            "arg_1": ACCESS}
    base.update(values)
    return b"".join(f"agi_{k}: {v}\n".encode() for k, v in base.items()) + b"\n"


async def raw_peer(port: int, *, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def closed_by_engine(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(100), 30) == b""
    except ConnectionResetError:
        return True


async def test_a_peer_not_in_allowed_peers_is_closed_before_its_headers(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"allowed_peers": "127.0.0.1/32"})
    try:
        reader, writer = await raw_peer(h.engine.server.port, source="127.0.0.2")  # type: ignore[union-attr]
        writer.write(env_block())
        assert await closed_by_engine(reader)
        writer.close()
        assert sample(h, "ivr_agi_peers_refused_total") == 1
        assert sample(h, "ivr_agi_connections_total") == 0
        await h.card()
        await h.call(digits=[""] * 3)  # 127.0.0.1 is still served
        assert [c.outcome for c in await h.cdrs()] == ["PIN_FAILED"]
    finally:
        await h.engine.stop(grace_s=5)


def test_allowed_peers_default_to_loopback_and_bad_values_are_refused() -> None:
    from ivr.settings import load_settings

    assert Settings().allowed_peers == "127.0.0.0/8,::1"
    with pytest.raises(SettingsError, match="allowed_peers"):
        load_settings(environ={"IVR_ALLOWED_PEERS": "10.0.0.0/33"})
    with pytest.raises(SettingsError, match="allowed_peers"):
        load_settings(environ={"IVR_ALLOWED_PEERS": " , "})


async def test_connections_above_the_cap_are_closed_at_once(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"max_connections": 2})
    try:
        port = h.engine.server.port  # type: ignore[union-attr]
        held = [await raw_peer(port) for _ in range(2)]  # silent: they hold their slots
        for _ in range(100):
            if sample(h, "ivr_agi_connections_active") == 2:
                break
            await asyncio.sleep(0.02)
        reader, writer = await raw_peer(port)
        assert await closed_by_engine(reader)
        writer.close()
        assert sample(h, "ivr_agi_connections_refused_total") == 1
        for _, w in held:
            w.close()
    finally:
        await h.engine.stop(grace_s=5)


@pytest.mark.parametrize("block", [env_block(callerid="1" * 5000),
                                   env_block(**{f"arg_{i}": "x" * 900 for i in range(2, 60)})])
async def test_an_oversized_header_is_refused_before_anything_is_stored(tmp_path: Path, block: bytes) -> None:
    h = await make_harness(tmp_path)
    try:
        reader, writer = await raw_peer(h.engine.server.port)  # type: ignore[union-attr]
        writer.write(block)
        assert await closed_by_engine(reader)
        writer.close()
        assert sample(h, "ivr_agi_protocol_errors_total", {"side": "remote"}) == 1
        assert await h.cdrs() == []
    finally:
        await h.engine.stop(grace_s=5)


async def test_a_long_caller_id_is_capped_before_it_is_stored(h: Harness) -> None:
    await h.call(caller_id="4" * 900, digits=[""] * 3)
    [cdr] = await h.cdrs()
    assert cdr.caller_raw == "4" * 80 and cdr.caller_e164 is None


async def test_reported_talk_beyond_the_engines_own_clock_is_not_debited(tmp_path: Path) -> None:
    # The fake compresses time: it reports 600 s of talk at once, as a lying peer would.
    h = await make_harness(tmp_path, {"talk_clock_cap": 1})
    try:
        card, pin = await h.card(minutes=10)
        with structlog.testing.capture_logs() as logs:
            await h.call(digits=[pin + "#"], dials=[dict(ring_ms=0, talk_ms=1_000_000_000)])
        [cdr] = await h.cdrs()
        assert cdr.outcome == "ANSWERED"
        assert cdr.debited_s < 30  # what passed on the engine's clock, not 600
        assert await h.balance(card) == 600 - cdr.debited_s
        assert [e["reported_ms"] for e in logs if e["event"] == "talk_capped_by_engine_clock"] == [600_000]
    finally:
        await h.engine.stop(grace_s=5)


async def test_a_dial_that_never_returns_is_lost_and_its_hold_left_to_reconciliation(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"dial_margin_s": 1}, ring_timeout_s=1)
    try:
        card, _ = await h.card(seconds=2)
        await h.store.bind(project_id=h.project.id, caller=CALLER, card_id=card.id, now_ms=1, source="operator",
                           max_bound=3)
        reader, writer = await raw_peer(h.engine.server.port)  # type: ignore[union-attr]
        writer.write(env_block())
        seen: list[str] = []
        while True:
            line = (await asyncio.wait_for(reader.readline(), 60)).decode()
            if not line:
                break
            seen.append(line.split(" ", 2)[1].strip('"') if line.startswith("EXEC") else line.split()[0])
            if line.startswith('EXEC "Dial"'):
                continue  # never answered: the engine gives up after ring + limit + margin
            writer.write(b"200 result=0\n")
        writer.close()
        assert "Dial" in seen
        [cdr] = await h.cdrs()
        assert (cdr.outcome, cdr.debited_s) == ("LOST", 0)
        after = await h.store.card(card.id)
        assert (after.balance_s, after.active_calls) == (2, 1) and after.reserved_s > 0  # the hold stays
    finally:
        await h.engine.stop(grace_s=5)


HOSTILE = "\x1b]0;pwned\x07\x1b[2J=HYPERLINK(\"http://evil\";\"x\")"


async def test_escapes_and_formulas_from_a_caller_id_are_inert_in_cdr_list_and_csv(h: Harness) -> None:
    await h.call(caller_id=HOSTILE, digits=[""] * 3)
    db = h.engine.settings.database
    listed = await asyncio.to_thread(CliRunner().invoke, main, ["--database", db, "cdr", "list"])
    assert listed.exit_code == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout
    assert "\\x1b]0;pwned\\x07" in listed.stdout
    out = Path(db).parent / "cdrs.csv"
    exported = await asyncio.to_thread(CliRunner().invoke, main, ["--database", db, "cdr", "list", "--csv", str(out)])
    assert exported.exit_code == 0, exported.stderr
    rows = list(csv.reader(io.StringIO(out.read_text())))
    cells = [c for row in rows[1:] for c in row]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) or c.lstrip("+-").replace(".", "").isdigit()
               for c in cells), cells
    assert not any("\x1b" in c for c in cells)


def test_csv_cells_neutralise_formulas_but_keep_plain_numbers() -> None:
    from ivr._safe import csv_cell, printable, unneutralise

    assert csv_cell("=1+1") == "'=1+1"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-2+3+cmd|' /C calc'!A0") == "'-2+3+cmd|' /C calc'!A0"
    assert csv_cell("\tx") == "'\\x09x"
    assert [csv_cell(v) for v in ("+41791234567", "-65", "-1.50", "-0:01:05", "+4190x.", 7)] == [
        "+41791234567", "-65", "-1.50", "-0:01:05", "+4190x.", 7]
    assert unneutralise("'=1+1") == "=1+1" and unneutralise("'quoted") == "'quoted"
    assert printable("a\x1b[2Jb\u202e") == "a\\x1b[2Jb\\u202e"


def test_the_console_log_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    configure(json=False, level="DEBUG", cache=False)
    try:
        structlog.get_logger("t").warning("caller_seen", caller=HOSTILE)
        logging.getLogger("aiosqlite").debug("executing %s with %s", "SELECT", ("pin-hash",))
        err = capsys.readouterr().err
        assert "\x1b" not in err and "\\x1b]0;pwned" in err
        assert "pin-hash" not in err  # statement parameters never reach any log
    finally:
        configure(json=True, level="INFO", cache=False)


# --- secrets at rest ------------------------------------------------------------------
async def test_database_files_and_secret_are_private_under_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "data" / "ivr.sqlite3"
        secret = tmp_path / "state" / "secret"
        engine = await Engine.create(Settings(database=str(db), secret_file=str(secret), port=0, metrics_port=0),
                                     metrics=Metrics())
        try:
            store: Any = engine.store  # open: a write makes the WAL and SHM files
            await store.claim_account_currency("CHF")
            for path in (db, Path(str(db) + "-wal"), Path(str(db) + "-shm"), secret):
                assert path.exists(), path
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
        finally:
            await engine.stop(grace_s=0)
    finally:
        os.umask(old)


async def test_an_existing_readable_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    db.touch(mode=0o644)
    os.chmod(db, 0o644)
    async with SqliteStore(db) as _:
        pass
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


async def test_the_engine_refuses_a_secret_others_can_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 64 + b"\n")
    os.chmod(secret, 0o640)
    with pytest.raises(SettingsError, match="accessible by others"):
        await Engine.create(Settings(database=str(tmp_path / "ivr.sqlite3"), secret_file=str(secret)),
                            metrics=Metrics())


async def test_a_secret_beside_the_database_still_works_with_a_warning(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    legacy = Path(str(db) + ".secret")
    legacy.write_bytes(b"y" * 64 + b"\n")  # noqa: ASYNC240 - a test fixture file, before the loop matters
    os.chmod(legacy, 0o600)
    settings = Settings(database=str(db), port=0, metrics_port=0)
    assert settings.secret_path == legacy and settings.secret_beside_database
    with structlog.testing.capture_logs() as logs:
        engine = await Engine.create(settings, metrics=Metrics())
    try:
        assert engine.secret == b"y" * 64
        assert any(e["event"] == "secret_beside_database" for e in logs)
    finally:
        await engine.stop(grace_s=0)
    fresh = Settings(database=str(tmp_path / "new.sqlite3"))
    assert not fresh.secret_beside_database and fresh.secret_path.parent != tmp_path


def test_pin_csv_is_0600_even_when_overwriting_a_readable_file(tmp_path: Path) -> None:
    db = str(tmp_path / "ivr.sqlite3")
    runner = CliRunner()
    made = runner.invoke(main, ["--database", db, "project", "create", "p", "--number", "+41440000001",
                                "--service", "PJSIP/1@x", "--currency", "CHF", "--region", "CH"])
    assert made.exit_code == 0, made.stderr
    target = tmp_path / "pins.csv"
    target.write_text("old\n")
    os.chmod(target, 0o644)
    bought = runner.invoke(main, ["--database", db, "card", "create", "--project", "p", "--minutes", "1",
                                  "--count", "2", "--csv", str(target), "--yes"])
    assert bought.exit_code == 0, bought.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
