"""A real engine process: SIGTERM with calls in flight, metrics scraped during a call,
JSON logs with one call_finished line per call."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from asterisk_sim import CallScript, DialScript, place_call
from ivr import operations as ops
from ivr.clock import SystemClock
from rating.pins import load_or_create_secret
from rating.store.sqlite import SqliteStore

from .conftest import ACCESS

IVR = str(Path(sys.executable).with_name("ivr"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def prepare(db: Path, callers: list[str]) -> dict[str, int]:
    async with SqliteStore(db) as store:
        project = await ops.create_project(store, name="test1", numbers=[ACCESS], service="Local/100@svc/n",
                                           region="CH", now_ms=SystemClock().now_ms(), warning_s=0)
        secret = load_or_create_secret(Path(str(db) + ".secret"))
        cards = {}
        for caller in callers:
            new = await ops.create_card(store, secret, project=project, minutes=10, note=caller,
                                        now_ms=SystemClock().now_ms())
            await ops.bind(store, card=new.card, number=caller, now_ms=SystemClock().now_ms())
            cards[caller] = new.card.id
        return cards


_started: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
def _no_engine_outlives_its_test() -> Iterator[None]:
    yield
    while _started:
        proc = _started.pop()
        if proc.returncode is None:
            proc.kill()


async def start_engine(db: Path, *extra: str) -> tuple[asyncio.subprocess.Process, int, int]:
    port, metrics_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        IVR, "--database", str(db), "serve", "--port", str(port), "--metrics-port", str(metrics_port),
        "--log-format", "json", *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _started.append(proc)
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            await w.wait_closed()
            return proc, port, metrics_port
        except OSError:
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("engine did not start")


def log_events(stderr: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]


async def test_sigterm_lets_calls_finish_then_cuts_and_still_settles(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    callers = ["+41790000001", "+41790000002", "+41790000003"]
    cards = await prepare(db, callers)
    proc, port, _ = await start_engine(db, "--grace", "1.5")
    # scale 0.1: a virtual second is 0.1 s. Short call: ends inside the grace period.
    short = asyncio.create_task(place_call("127.0.0.1", port, CallScript(
        caller_id=callers[0], extension=ACCESS, time_scale=0.1, uniqueid="u.short",
        dials=[DialScript(ring_ms=1000, talk_ms=12_000)])))
    # Long call: still in the Dial when the grace period ends.
    long = asyncio.create_task(place_call("127.0.0.1", port, CallScript(
        caller_id=callers[1], extension=ACCESS, time_scale=0.1, uniqueid="u.long", idle_timeout_s=30,
        dials=[DialScript(ring_ms=1000, talk_ms=50_000)])))  # 5 s real: outlives the 1.5 s grace
    await asyncio.sleep(1.2)  # both are in their Dial now
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    try:  # no new calls once the signal is in
        await place_call("127.0.0.1", port, CallScript(caller_id=callers[2], extension=ACCESS,
                                                       uniqueid="u.late", idle_timeout_s=2))
        late_refused = False
    except OSError:
        late_refused = True
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    await short
    long_rec = await long
    assert proc.returncode == 0
    assert late_refused
    assert long_rec.closed_by == "server"

    async with SqliteStore(db) as store:
        cdrs = {c.uniqueid: c for c in await store.cdrs()}
        assert set(cdrs) == {"u.short", "u.long"}
        assert (cdrs["u.short"].outcome, cdrs["u.short"].debited_s) == ("ANSWERED", 12)
        cut = cdrs["u.long"]
        assert cut.outcome == "INTERRUPTED" and cut.hangup_side == "engine"
        # billed: the engine's real time from the Dial to the cut (~0.6 s + 0.2 s + 1.5 s grace)
        assert 1 <= cut.debited_s <= 5
        for caller in callers[:2]:
            card = await store.card(cards[caller])
            assert (card.reserved_s, card.active_calls) == (0, 0)
            assert card.balance_s == 600 - cdrs["u.short" if caller == callers[0] else "u.long"].debited_s
    events = log_events(stderr)
    assert sum(e["event"] == "call_finished" for e in events) == 2
    assert not [e for e in events if e.get("level") == "error"]
    assert all("uniqueid" in e for e in events if e["event"] in ("call_finished", "debit_settled"))


async def test_metrics_are_scraped_during_a_call(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    await prepare(db, ["+41790000001"])
    proc, port, metrics_port = await start_engine(db)
    try:
        call = asyncio.create_task(place_call("127.0.0.1", port, CallScript(
            caller_id="+41790000001", extension=ACCESS, time_scale=0.05,
            dials=[DialScript(ring_ms=1000, talk_ms=40_000)])))
        await asyncio.sleep(0.8)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        during = await asyncio.to_thread(scrape)
        assert "ivr_agi_connections_active 1.0" in during
        await call
        after = await asyncio.to_thread(scrape)
        assert 'ivr_calls_total{flow="prepaid",outcome="ANSWERED"} 1.0' in after
        assert "ivr_debited_seconds_total 40.0" in after
        assert 'ivr_agi_command_duration_seconds_count{command="EXEC Dial"} 1.0' in after
        assert 'ivr_agi_command_duration_seconds_count{command="EXEC Playback"} 1.0' in after
        assert "ivr_store_operation_duration_seconds_count" in after
        assert "ivr_build_info" in after
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 20)


async def test_second_sigint_forces_exit(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    await prepare(db, ["+41790000001"])
    proc, port, _ = await start_engine(db, "--grace", "600")
    call = asyncio.create_task(place_call("127.0.0.1", port, CallScript(
        caller_id="+41790000001", extension=ACCESS, time_scale=0.1, idle_timeout_s=30,
        dials=[DialScript(ring_ms=1000, talk_ms=500_000)])))
    await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    assert proc.returncode is None  # waiting for the call, within its 600 s grace
    proc.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode != 0
    assert any(e["event"] == "forced_exit" for e in log_events(stderr))
    call.cancel()
