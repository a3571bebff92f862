"""A store that fails mid-call loses nothing, and new calls fail closed at once.

Real parts only: a second process holds SQLite's write lock (``BEGIN IMMEDIATE``),
a real tmpfs fills up; the engine runs in this process (fast cases) or as a real
``ivr serve`` process (the issue's scenarios, measured: ``MEASURED`` lines on stdout,
``pytest -s`` shows them)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from asterisk_sim import CallScript, DialScript, place_call
from ivr.clock import SystemClock
from ivr.journal import Journal
from rating.store.sqlite import SqliteStore

from .conftest import CALLER, Harness
from .test_journal import LOCKER
from .test_lifecycle import ACCESS, log_events, prepare, start_engine


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def lock_database(db: str, seconds: float) -> asyncio.subprocess.Process:
    """Another process takes SQLite's write lock and keeps it ``seconds``."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", LOCKER, db, str(seconds),
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"locked\n"
    return proc


async def test_a_call_ending_while_the_store_is_locked_is_journalled_then_settled_exactly(h: Harness) -> None:
    card, _ = await h.card()
    other, _ = await h.card()
    now = SystemClock().now_ms()
    for number, c in ((CALLER, card), ("+41790000002", other)):
        await h.store.bind(project_id=h.project.id, caller=number, card_id=c.id, now_ms=now, source="operator",
                           max_bound=3)
    db = h.engine.settings.database
    # time_scale 0.1: the 20 s talk lasts 2 s; the lock (4 s, five store budgets) covers its end
    call = asyncio.create_task(h.call(time_scale=0.1, uniqueid="u.long", idle_timeout_s=30,
                                      dials=[dict(ring_ms=1000, talk_ms=20_000)]))
    await until(lambda: _held(h, card.id))
    locker = await lock_database(db, 4)
    try:
        started = time.monotonic()
        refused = await h.call(caller_id="+41790000002", uniqueid="u.refused", idle_timeout_s=30)
        refused_s = time.monotonic() - started
        rec = await call
        assert rec.dials[0]["status"] == "ANSWER"
        assert refused.variables.get("IVR_RESULT") == "error"  # the dialplan says "service unavailable"
        assert refused.hung_up_by is None and refused.closed_by == "server"
        assert [e.cdr.uniqueid for e in Journal(h.engine.settings.state_path).read().pending] == [
            "u.refused", "u.long"]
        metrics = h.engine.metrics.registry
        assert metrics.get_sample_value("ivr_journal_entries") == 2
        assert (metrics.get_sample_value("ivr_journal_oldest_age_seconds") or 0) > 0
        assert (metrics.get_sample_value("ivr_store_failures_total", {"operation": "reserve"}) or 0) >= 1
        held = await h.store.card(card.id)
        assert held.active_calls == 1  # the hold waits for the replay
    finally:
        await locker.wait()
    # the lock is gone: the engine replays on its own
    await until(lambda: _free(h, card.id))
    await until(lambda: _no_backlog(h))
    cdrs = {c.uniqueid: c for c in await h.cdrs()}
    assert set(cdrs) == {"u.long", "u.refused"}
    assert (cdrs["u.long"].talk_s, cdrs["u.long"].debited_s, cdrs["u.long"].outcome) == (20, 20, "ANSWERED")
    assert cdrs["u.refused"].outcome == "ERROR"
    assert (await h.store.card(card.id)).balance_s == 600 - 20
    assert (await h.store.card(other.id)).balance_s == 600
    assert not Journal(h.engine.settings.state_path).path.exists()
    assert h.engine.metrics.registry.get_sample_value("ivr_journal_entries") == 0
    assert h.engine.metrics.registry.get_sample_value("ivr_journal_replayed_total") == 2
    print(f"\nMEASURED in-process: new call during the lock failed closed after {refused_s:.2f} s")


async def _no_backlog(h: Harness) -> bool:
    return h.engine.metrics.registry.get_sample_value("ivr_journal_entries") == 0


async def _held(h: Harness, card_id: int) -> bool:
    return (await h.store.card(card_id)).active_calls == 1


async def _free(h: Harness, card_id: int) -> bool:
    card = await h.store.card(card_id)
    return card.active_calls == 0 and card.reserved_s == 0


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("ivr_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def card_state(db: Path, card_id: int) -> tuple[int, int, int, list[tuple[str, int, int, str]]]:
    async with SqliteStore(db) as store:
        c = await store.card(card_id)
        return c.balance_s, c.reserved_s, c.active_calls, [(x.uniqueid, x.talk_s, x.debited_s, x.outcome)
                                                             for x in await store.cdrs()]


@pytest.mark.slow
async def test_the_issue_scenario_a_write_lock_held_45_s_mid_call(tmp_path: Path) -> None:
    """Talk 60 s in real time; 30 s into it another process takes the write lock for 45 s,
    so the call ends (and a new call arrives) while the store is locked."""
    db = tmp_path / "ivr.sqlite3"
    cards = await prepare(db, ["+41790000001", "+41790000002"])
    proc, port, metrics_port = await start_engine(db)
    try:
        call = asyncio.create_task(place_call("127.0.0.1", port, CallScript(
            caller_id="+41790000001", extension=ACCESS, time_scale=1.0, uniqueid="u.talk60", idle_timeout_s=120,
            dials=[DialScript(ring_ms=2000, talk_ms=60_000)])))
        await asyncio.sleep(2 + 0.5 + 1.5 + 30)  # answer, prompt, ring, then 30 s of talk
        locker = await lock_database(str(db), 45)
        started = time.monotonic()
        refused = await place_call("127.0.0.1", port, CallScript(caller_id="+41790000002", extension=ACCESS,
                                                                 uniqueid="u.new", idle_timeout_s=60))
        refused_s = time.monotonic() - started
        rec = await call
        during = await asyncio.to_thread(scrape, metrics_port)
        await locker.wait()
        released = time.monotonic()
        await until(lambda: _free_in(db, cards["+41790000001"]), 60)
        settled_after_s = time.monotonic() - released
        await until(lambda: _journal_empty(metrics_port))
        after = await asyncio.to_thread(scrape, metrics_port)
    finally:
        proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert refused.variables.get("IVR_RESULT") == "error" and refused.closed_by == "server"
    assert rec.dials[0]["talk_ms"] == 60_000
    assert during["ivr_journal_entries"] == 2
    assert during['ivr_store_failures_total{operation="reserve"}'] >= 1  # the new call's hold
    assert during['ivr_store_failures_total{operation="journal_replay"}'] >= 1  # the retries while locked
    balance, reserved, active, cdrs = await card_state(db, cards["+41790000001"])
    talk = [c for c in cdrs if c[0] == "u.talk60"]
    assert talk == [("u.talk60", 60, 60, "ANSWERED")]
    assert (balance, reserved, active) == (600 - 60, 0, 0)
    assert after["ivr_journal_entries"] == 0 and after["ivr_journal_replayed_total"] == 2
    events = log_events(stderr)
    assert sum(e["event"] == "call_journalled" for e in events) == 2
    print(f"\nMEASURED lock 45 s: talk 60 s, debited {talk[0][2]} s, CDRs {len(talk)}, card free "
          f"{settled_after_s:.1f} s after the lock ended; new call failed closed in {refused_s:.2f} s")


async def _journal_empty(metrics_port: int) -> bool:
    return (await asyncio.to_thread(scrape, metrics_port))["ivr_journal_entries"] == 0


async def _free_in(db: Path, card_id: int) -> bool:
    balance, reserved, active, _ = await card_state(db, card_id)
    return reserved == 0 and active == 0


# --- a disk that fills ----------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs of our own (root, or the test is skipped: it needs mount(2))."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(where)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write until the disk is full (ENOSPC); returns the file that took the room."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
async def test_the_issue_scenario_the_disk_fills_during_the_dial(tiny_disk: Path, tmp_path: Path) -> None:
    db = tiny_disk / "ivr.sqlite3"  # the journal in its default place: beside the database, same disk
    cards = await prepare(db, ["+41790000001", "+41790000002"])
    proc, port, metrics_port = await start_engine(db)
    try:
        # time_scale 0.05: the 120 s talk lasts 6 s
        call = asyncio.create_task(place_call("127.0.0.1", port, CallScript(
            caller_id="+41790000001", extension=ACCESS, time_scale=0.05, uniqueid="u.talk120", idle_timeout_s=60,
            dials=[DialScript(ring_ms=2000, talk_ms=120_000)])))
        await until(lambda: _in_call(db, cards["+41790000001"]))
        await asyncio.sleep(1)
        filler = await asyncio.to_thread(fill, tiny_disk)
        rec = await call
        started = time.monotonic()
        refused = await place_call("127.0.0.1", port, CallScript(caller_id="+41790000002", extension=ACCESS,
                                                                 uniqueid="u.new", idle_timeout_s=60))
        refused_s = time.monotonic() - started
        during = await asyncio.to_thread(scrape, metrics_port)
        journal = Journal(Path(str(db) + ".state"))
        pending = journal.read().pending
        reserve_used = not journal.ballast_path.exists()
        filler.unlink()  # the operator makes room
        freed = time.monotonic()
        await until(lambda: _free_in(db, cards["+41790000001"]), 60)
        settled_after_s = time.monotonic() - freed
        await until(lambda: _journal_empty(metrics_port))
        after = await asyncio.to_thread(scrape, metrics_port)
    finally:
        proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert rec.dials[0]["talk_ms"] == 120_000
    assert refused.variables.get("IVR_RESULT") == "error" and refused.closed_by == "server"
    assert [e.cdr.uniqueid for e in pending] == ["u.talk120", "u.new"]
    assert sum(v for k, v in during.items() if k.startswith("ivr_store_failures_total{")) >= 1
    assert during["ivr_journal_entries"] == 2
    balance, reserved, active, cdrs = await card_state(db, cards["+41790000001"])
    talk = [c for c in cdrs if c[0] == "u.talk120"]
    assert talk == [("u.talk120", 120, 120, "ANSWERED")]
    assert (balance, reserved, active) == (600 - 120, 0, 0)
    assert after["ivr_journal_entries"] == 0
    assert reserve_used  # the journal wrote into the room it had kept
    assert journal.ballast_path.exists()  # and keeps it again
    assert not [e for e in log_events(stderr) if e["event"] == "journal_write_failed"]
    print(f"\nMEASURED disk full: talk 120 s, debited {talk[0][2]} s, CDRs {len(talk)}, card free "
          f"{settled_after_s:.1f} s after room was made; new call failed closed in {refused_s:.2f} s")


async def _in_call(db: Path, card_id: int) -> bool:
    _, _, active, _ = await card_state(db, card_id)
    return active == 1


async def mount(*args: str) -> int:
    proc = await asyncio.create_subprocess_exec("mount", *args, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait()


async def test_a_journal_that_cannot_be_written_either_keeps_the_call_until_the_store_takes_it(
        h: Harness) -> None:
    """The store is locked and the state directory read-only (a read-only bind mount of its
    own): the engine keeps the call in memory, logs it in full, and writes it to the store
    once the lock is gone."""
    card, _ = await h.card()
    await h.store.bind(project_id=h.project.id, caller=CALLER, card_id=card.id, now_ms=SystemClock().now_ms(),
                       source="operator", max_bound=3)
    state = h.engine.settings.state_path
    state.mkdir(parents=True, exist_ok=True)
    (state / "journal.lock").touch()
    (state / "replay.lock").touch()
    if await mount("--bind", str(state), str(state)) != 0:
        pytest.skip("cannot bind-mount here (needs mount(2))")
    try:
        assert await mount("-o", "remount,ro,bind", str(state)) == 0
        call = asyncio.create_task(h.call(time_scale=0.1, uniqueid="u.nowhere", idle_timeout_s=30,
                                          dials=[dict(ring_ms=1000, talk_ms=15_000)]))
        await until(lambda: _held(h, card.id))
        locker = await lock_database(h.engine.settings.database, 3)
        await call
        metrics = h.engine.metrics.registry
        assert metrics.get_sample_value("ivr_journal_write_failures_total") == 1
        assert metrics.get_sample_value("ivr_journal_entries") == 1  # kept in memory, counted
        await locker.wait()
        await until(lambda: _free(h, card.id))
    finally:
        await mount("-o", "remount,rw,bind", str(state))
        proc = await asyncio.create_subprocess_exec("umount", str(state))
        await proc.wait()
    [cdr] = await h.cdrs()
    assert (cdr.uniqueid, cdr.talk_s, cdr.debited_s) == ("u.nowhere", 15, 15)
    assert (await h.store.card(card.id)).balance_s == 600 - 15
    await until(lambda: _no_backlog(h))
