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


async def start_engine(db: Path, *extra: str, port: int | None = None) -> tuple[asyncio.subprocess.Process, int, int]:
    return await launch_engine(["--database", str(db)], list(extra), port=port)


async def launch_engine(before: list[str], after: list[str], *, port: int | None = None,
                        env: dict[str, str] | None = None) -> tuple[asyncio.subprocess.Process, int, int]:
    """Start `ivr BEFORE serve --port P --metrics-port M AFTER` and wait until it accepts.
    A free port found by bind-and-close can be taken again before the engine binds it
    (another test's client, the metrics port drawing the same number): the engine then
    exits at once with one line naming the address; such a start is retried on fresh
    ports, never taken for a pass. Any other early exit fails with the engine's stderr."""
    failures: list[str] = []
    for _ in range(5):
        agi_port = port or free_port()
        metrics_port = free_port()
        while metrics_port == agi_port:
            metrics_port = free_port()
        proc = await asyncio.create_subprocess_exec(
            IVR, *before, "serve", "--port", str(agi_port), "--metrics-port", str(metrics_port),
            "--log-format", "json", *after, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env)
        _started.append(proc)
        for _ in range(400):
            if proc.returncode is not None:
                break
            try:
                _, w = await asyncio.open_connection("127.0.0.1", agi_port)
                w.close()
                await w.wait_closed()
                return proc, agi_port, metrics_port
            except OSError:
                await asyncio.sleep(0.05)
        if proc.returncode is None:
            proc.kill()
        _, stderr = await proc.communicate()
        failures.append(stderr.decode(errors="replace")[-2000:])
        if "in use" not in failures[-1]:
            break
        await asyncio.sleep(0.2)
    raise AssertionError("engine did not start:\n" + "\n---\n".join(failures))


def log_events(stderr: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]


async def test_sigterm_bills_no_guess_dials_go_to_the_next_engine(tmp_path: Path) -> None:
    """SIGTERM, grace 3 s: a call in its Dial is handed over at once (no guess billed,
    no CDR); a call still in its announcement goes on to its Dial, then is handed over
    too; no new calls. The engine of the deploy settles both exactly (settle route)."""
    from .test_no_call_lost import dialplan

    db = tmp_path / "ivr.sqlite3"
    callers = ["+41790000001", "+41790000002", "+41790000003"]
    cards = await prepare(db, callers)
    proc, port, _ = await start_engine(db, "--grace", "3")

    def call(caller: str, uniqueid: str, talk_ms: int) -> asyncio.Task[object]:
        return asyncio.create_task(place_call("127.0.0.1", port, CallScript(
            caller_id=caller, extension=ACCESS, time_scale=0.1, uniqueid=uniqueid, idle_timeout_s=30,
            dials=[DialScript(ring_ms=1000, talk_ms=talk_ms)], continuation=dialplan())))

    long = call(callers[0], "u.long", 90_000)
    await asyncio.sleep(1.5)            # u.long is in its Dial
    short = call(callers[1], "u.short", 70_000)
    await asyncio.sleep(0.2)            # u.short is in its announcement
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    try:  # no new calls once the signal is in
        await place_call("127.0.0.1", port, CallScript(caller_id=callers[2], extension=ACCESS,
                                                       uniqueid="u.late", idle_timeout_s=2))
        late_refused = False
    except OSError:
        late_refused = True
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0 and late_refused
    events = log_events(stderr)
    assert sorted(e["uniqueid"] for e in events if e["event"] == "call_handed_over") == ["u.long", "u.short"]
    assert not [e for e in events if e["event"] == "call_finished"]
    assert not [e for e in events if e.get("level") == "error"]
    successor, _, _ = await start_engine(db, port=port)
    long_rec, short_rec = await long, await short
    async with SqliteStore(db) as store:
        cdrs = {c.uniqueid: c for c in await store.cdrs()}
        assert set(cdrs) == {"u.short", "u.long"}
        assert (cdrs["u.long"].outcome, cdrs["u.long"].talk_s, cdrs["u.long"].debited_s) == ("ANSWERED", 90, 90)
        assert (cdrs["u.short"].outcome, cdrs["u.short"].talk_s, cdrs["u.short"].debited_s) == ("ANSWERED", 70, 70)
        for caller, talk in ((callers[0], 90), (callers[1], 70)):
            card = await store.card(cards[caller])
            assert (card.balance_s, card.reserved_s, card.active_calls) == (600 - talk, 0, 0)
    assert [d["status"] for d in short_rec.dials] == ["ANSWER"]  # type: ignore[attr-defined]
    assert len(long_rec.sessions) == 1  # type: ignore[attr-defined]
    successor.send_signal(signal.SIGTERM)
    await asyncio.wait_for(successor.communicate(), 20)


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
    # An unbound line in PIN entry (real time: 7 s per try): the stop waits for it.
    call = asyncio.create_task(place_call("127.0.0.1", port, CallScript(
        caller_id="+41790000009", extension=ACCESS, time_scale=1.0, idle_timeout_s=30)))
    await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    assert proc.returncode is None  # waiting for the call, within its 600 s grace
    proc.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode != 0
    assert any(e["event"] == "forced_exit" for e in log_events(stderr))
    call.cancel()
