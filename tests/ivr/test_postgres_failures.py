"""PostgreSQL going away and coming back under a running engine (issue 10, item 5).

Real parts: a PostgreSQL cluster of this module's own (stopping it must not touch the
session's server), a real ``ivr serve`` process on it, the fake Asterisk placing bound
callers' calls. The server is stopped the way a crash or a failover looks to the engine
(``pg_ctl stop -m immediate``), frozen (SIGSTOP: a hung server, a network dropping
packets), and, with a streaming standby, failed over (``pg_ctl promote``).

"Within 2 s" is read from the engine's own ``call_finished`` line (``duration_s``: from
the FastAGI session's start to the call's end, the refusal decided and the channel told
``IVR_RESULT=error``); the fake Asterisk's clock cannot tell (its virtual time does not
count the server's think time). Figures are printed as ``MEASURED`` lines (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from asterisk_sim import CallRecord, CallScript, DialScript, place_call
from ivr import operations as ops
from ivr.clock import SystemClock
from rating.pins import load_or_create_secret
from rating.store import open_store
from tests.postgres import PostgresServer, _free_port, need_postgres, running_server

from .conftest import ACCESS
from .test_lifecycle import _no_engine_outlives_its_test, launch_engine  # noqa: F401 - the autouse cleanup

FAIL_CLOSED_S = 2.0   # the promise for a new call while PostgreSQL is unreachable
_uid = itertools.count(1)


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    """A cluster only this module's tests stop, freeze and restart."""
    with running_server() as server:
        yield server


async def prepare(url: str, callers: list[str], secret: Path) -> dict[str, int]:
    """A project and one 10-minute card bound to each caller; returns card ids by caller."""
    now = SystemClock().now_ms
    key = load_or_create_secret(secret)
    store = open_store(url)
    await store.open()
    try:
        project = await ops.create_project(store, name="pg", numbers=[ACCESS], service="Local/100@svc/n",
                                           region="CH", warning_s=0, now_ms=now())
        cards = {}
        for caller in callers:
            new = await ops.create_card(store, key, project=project, minutes=10, note=caller, now_ms=now())
            await ops.bind(store, card=new.card, number=caller, now_ms=now())
            cards[caller] = new.card.id
        return cards
    finally:
        await store.close()


@dataclass
class RunningEngine:
    proc: asyncio.subprocess.Process
    port: int
    metrics_port: int
    events: list[dict[str, Any]] = field(default_factory=list)

    def call(self, caller: str, *, talk_ms: int = 2000, time_scale: float = 0.0,
             uniqueid: str | None = None) -> Coroutine[Any, Any, CallRecord]:
        return place_call("127.0.0.1", self.port, CallScript(
            caller_id=caller, extension=ACCESS, uniqueid=uniqueid or f"pg.{next(_uid)}", idle_timeout_s=60,
            time_scale=time_scale, dials=[DialScript(ring_ms=1000, talk_ms=talk_ms)]))

    def scrape(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return {name: float(value) for name, value in
                (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("ivr_"))}

    def finished(self, uniqueid: str) -> dict[str, Any]:
        [event] = [e for e in self.events if e.get("event") == "call_finished" and e.get("uniqueid") == uniqueid]
        return event


@asynccontextmanager
async def engine(url: str, secret: Path, tmp_path: Path) -> AsyncIterator[RunningEngine]:
    """``ivr serve`` on ``url`` (store_budget_ms as shipped: 750), its JSON log read as it
    comes (a full stderr pipe would stall the engine); SIGTERM at the end, exit 0."""
    env = {**os.environ, "IVR_DATABASE": url, "IVR_SECRET_FILE": str(secret),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    proc, port, metrics_port = await launch_engine([], ["--grace", "5"], env=env)
    running = RunningEngine(proc, port, metrics_port)

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            if line.startswith(b"{"):
                running.events.append(json.loads(line))

    reader = asyncio.create_task(read())
    try:
        yield running
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        await asyncio.wait_for(reader, 10)
    assert proc.returncode == 0


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def card_row(url: str, card_id: int) -> tuple[int, int, int]:
    store = open_store(url)
    await store.open()
    try:
        card = await store.card(card_id)
        return card.balance_s, card.reserved_s, card.active_calls
    finally:
        await store.close()


async def cdrs_of(url: str) -> dict[str, list[tuple[int, int, str]]]:
    store = open_store(url)
    await store.open()
    try:
        out: dict[str, list[tuple[int, int, str]]] = {}
        for c in await store.cdrs(limit=10_000):
            out.setdefault(c.uniqueid, []).append((c.talk_s, c.debited_s, c.outcome))
        return out
    finally:
        await store.close()


def refused(rec: CallRecord) -> bool:
    """Failed closed: the engine told the dialplan (IVR_RESULT=error: "service unavailable")
    and ended the session itself, nothing dialled."""
    return rec.variables.get("IVR_RESULT") == "error" and rec.closed_by == "server" and not rec.dials


async def test_postgres_stopped_mid_run_then_started_again(own_server: PostgresServer, tmp_path: Path) -> None:
    url = own_server.create_database("restart")
    secret = tmp_path / "ivr.secret"
    cards = await prepare(url, ["+41790000001", "+41790000002", "+41790000003"], secret)
    before, dialling, new = cards
    async with engine(url, secret, tmp_path) as e:
        first = await e.call(before, uniqueid="u.before")
        assert first.dials[0]["status"] == "ANSWER" and "IVR_RESULT" not in first.variables
        # A call in its Dial when PostgreSQL dies: 20 s of talk over 5 s real.
        in_dial = asyncio.create_task(e.call(dialling, talk_ms=20_000, time_scale=0.25, uniqueid="u.dial"))
        await until(lambda: _active(url, cards[dialling]))
        opened_before = e.scrape()["ivr_store_connections_opened_total"]
        await asyncio.to_thread(own_server.stop)        # -m immediate: as a crash looks

        refusals = [await e.call(new, uniqueid=f"u.down{i}") for i in range(3)]
        rec = await in_dial
        during = await asyncio.to_thread(e.scrape)
        assert all(refused(r) for r in refusals)
        assert rec.dials[0]["status"] == "ANSWER" and rec.dials[0]["talk_ms"] == 20_000
        decided = [e.finished(f"u.down{i}")["duration_s"] for i in range(3)]
        assert all(d < FAIL_CLOSED_S for d in decided), decided
        assert during["ivr_store_up"] == 0
        assert during['ivr_store_pool_connections{state="in_use"}'] == 0
        assert during['ivr_store_pool_connections{state="idle"}'] == 0   # the pool dropped the dead ones
        assert during["ivr_store_pool_max_connections"] == 10
        assert sum(v for k, v in during.items() if k.startswith("ivr_store_failures_total{")) >= 1, during
        assert during["ivr_journal_entries"] == 4   # that call and the three refusals' CDRs

        await asyncio.to_thread(own_server.start)       # same port, same data: the engine is not restarted
        await until(lambda: _journal_empty(e))
        after = [await e.call(new, uniqueid=f"u.back{i}") for i in range(3)]
        back = await asyncio.to_thread(e.scrape)
    assert all(r.dials and r.dials[0]["status"] == "ANSWER" and "IVR_RESULT" not in r.variables for r in after)
    assert back["ivr_store_up"] == 1
    assert back["ivr_store_connections_opened_total"] > opened_before   # the pool reconnected by itself
    assert back["ivr_journal_replayed_total"] == 4
    cdrs = await cdrs_of(url)
    assert cdrs["u.dial"] == [(20, 20, "ANSWERED")]       # settled through the journal, exactly once
    assert all(cdrs[f"u.down{i}"] == [(0, 0, "ERROR")] for i in range(3))
    assert all(cdrs[f"u.back{i}"] == [(2, 2, "ANSWERED")] for i in range(3))
    assert await card_row(url, cards[dialling]) == (600 - 20, 0, 0)
    assert await card_row(url, cards[new]) == (600 - 6, 0, 0)
    journalled = [ev for ev in e.events if ev.get("event") == "call_journalled"]
    assert sorted(ev["uniqueid"] for ev in journalled) == ["u.dial", "u.down0", "u.down1", "u.down2"]
    idle, in_use = (during[f'ivr_store_pool_connections{{state="{s}"}}'] for s in ("idle", "in_use"))
    print(f"\nMEASURED PostgreSQL stopped: new calls failed closed in {', '.join(f'{d:.3f}' for d in decided)} s"
          f" (engine's call_finished); pool during the outage: {idle:.0f} idle, {in_use:.0f} in use;"
          " call in its Dial journalled,"
          f" settled once after the restart (20 s debited); connections opened {opened_before:.0f} ->"
          f" {back['ivr_store_connections_opened_total']:.0f}")


async def test_a_hung_postgres_costs_a_call_one_budget(own_server: PostgresServer, tmp_path: Path) -> None:
    """SIGSTOP: the connections stay open and nothing answers. Without the budget a call
    would wait for TCP or the driver's own timeouts; with it, one store budget (750 ms)."""
    url = own_server.create_database("hung")
    secret = tmp_path / "ivr.secret"
    cards = await prepare(url, ["+41790000011", "+41790000012"], secret)
    caller, later = cards
    async with engine(url, secret, tmp_path) as e:
        assert (await e.call(caller, uniqueid="u.ok")).dials[0]["status"] == "ANSWER"
        await asyncio.to_thread(own_server.pause)
        try:
            await asyncio.sleep(1.2)  # past config_refresh_s: the routing snapshot is asked for again
            refusals = [await e.call(later, uniqueid=f"u.hung{i}") for i in range(3)]
            during = await asyncio.to_thread(e.scrape)
        finally:
            await asyncio.to_thread(own_server.resume)
        await until(lambda: _journal_empty(e))
        back = await e.call(later, uniqueid="u.resumed")
    assert all(refused(r) for r in refusals)
    decided = [e.finished(f"u.hung{i}")["duration_s"] for i in range(3)]
    assert all(d < FAIL_CLOSED_S for d in decided), decided
    assert during["ivr_store_timeouts_total"] >= 1         # cut at the budget, not refused by the server
    assert during["ivr_store_up"] == 0
    reasons = [ev["error"] for ev in e.events if ev.get("event") == "store_unavailable"]
    assert any("no answer from PostgreSQL within 750 ms" in r for r in reasons), reasons
    assert back.dials[0]["status"] == "ANSWER"
    cdrs = await cdrs_of(url)
    assert all(cdrs[f"u.hung{i}"] == [(0, 0, "ERROR")] for i in range(3))
    print(f"\nMEASURED PostgreSQL frozen: new calls failed closed in {', '.join(f'{d:.3f}' for d in decided)} s"
          f" (engine's call_finished), {during['ivr_store_timeouts_total']:.0f} operations cut at the budget")


async def _active(url: str, card_id: int) -> bool:
    return (await card_row(url, card_id))[2] == 1


async def _journal_empty(e: RunningEngine) -> bool:
    return (await asyncio.to_thread(e.scrape))["ivr_journal_entries"] == 0


# --- libpq multi-host URLs: a standby and a primary, then a failover -------------------
async def _server_port(url: str) -> tuple[int, bool]:
    """Where asyncpg's connect lands for ``url``: (port, in recovery)."""
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(await conn.fetchval("SHOW port")), bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
    finally:
        await conn.close()


async def _caught_up(primary: PostgresServer, standby: PostgresServer) -> bool:
    import asyncpg

    p = await asyncpg.connect(primary.url(), timeout=10)
    s = await asyncpg.connect(standby.url(), timeout=10)
    try:
        sent = await p.fetchval("SELECT pg_current_wal_lsn()")
        return bool(await s.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", sent))
    finally:
        await p.close()
        await s.close()


@pytest.fixture
def primary_and_standby() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary and its streaming hot standby (pg_basebackup -R), both on loopback."""
    bin_dir = need_postgres()
    primary = PostgresServer(bin_dir)
    standby: PostgresServer | None = None
    try:
        primary.start()
        standby = PostgresServer(bin_dir, standby_of=primary)
        standby.start()
        yield primary, standby
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()


async def test_a_multi_host_url_finds_the_primary_and_follows_a_failover(
        primary_and_standby: tuple[PostgresServer, PostgresServer], tmp_path: Path) -> None:
    primary, standby = primary_and_standby
    primary.create_database("multi")
    # the standby first: target_session_attrs=read-write must pass it by
    url = f"postgresql://ivr@127.0.0.1:{standby.port},127.0.0.1:{primary.port}/multi?target_session_attrs=read-write"
    await until(lambda: _caught_up(primary, standby))   # the database exists on the standby too
    assert await _server_port(url) == (primary.port, False)
    assert await _server_port(standby.url("multi")) == (standby.port, True)   # it is a hot standby
    nothing = _free_port()  # a port where nothing listens
    assert await _server_port(f"postgresql://ivr@127.0.0.1:{nothing},127.0.0.1:{primary.port}/multi") == (
        primary.port, False)                                                   # a host that is down is skipped

    secret = tmp_path / "ivr.secret"
    cards = await prepare(url, ["+41790000021", "+41790000022", "+41790000023"], secret)
    caller, dialling, later = cards
    async with engine(url, secret, tmp_path) as e:
        assert (await e.call(caller, uniqueid="u.primary")).dials[0]["status"] == "ANSWER"
        in_dial = asyncio.create_task(e.call(dialling, talk_ms=20_000, time_scale=0.25, uniqueid="u.failover"))
        await until(lambda: _active(url, cards[dialling]))
        await until(lambda: _caught_up(primary, standby))
        await asyncio.to_thread(primary.stop)          # the primary dies: only a read-only standby is left
        refusal = await e.call(later, uniqueid="u.nowhere")
        rec = await in_dial
        await asyncio.to_thread(standby.promote)       # the failover: the standby becomes the primary
        await until(lambda: _journal_empty(e))
        after = await e.call(later, uniqueid="u.promoted")
    assert refused(refusal) and e.finished("u.nowhere")["duration_s"] < FAIL_CLOSED_S
    assert rec.dials[0]["talk_ms"] == 20_000
    assert after.dials[0]["status"] == "ANSWER"
    assert await _server_port(url) == (standby.port, False)   # the URL now lands on the promoted standby
    cdrs = await cdrs_of(url)
    assert cdrs["u.primary"] == [(2, 2, "ANSWERED")]          # written on the old primary, replicated
    assert cdrs["u.failover"] == [(20, 20, "ANSWERED")]       # journalled during the failover, settled once after
    assert cdrs["u.nowhere"] == [(0, 0, "ERROR")]
    assert cdrs["u.promoted"] == [(2, 2, "ANSWERED")]
    assert await card_row(url, cards[dialling]) == (600 - 20, 0, 0)
    print(f"\nMEASURED failover: a call while no primary failed closed in"
          f" {e.finished('u.nowhere')['duration_s']:.3f} s; the call in its Dial settled once on the promoted standby;"
          " new calls go there")
