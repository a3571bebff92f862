"""Two real engine processes on one PostgreSQL, many calls at once from the fake
Asterisk on the same cards: no overdraft, one CDR per call, every hold closed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from asterisk_sim import CallScript, DialScript, place_call
from ivr import operations as ops
from ivr.clock import SystemClock
from rating.pins import load_or_create_secret
from rating.store import open_store

from .conftest import ACCESS
from .test_lifecycle import _no_engine_outlives_its_test, free_port, launch_engine  # noqa: F401 - the autouse cleanup

IVR = str(Path(sys.executable).with_name("ivr"))
CARD_SECONDS = 90


async def start_engine(url: str, secret: Path) -> tuple[asyncio.subprocess.Process, int]:
    env = {**os.environ, "IVR_DATABASE": url, "IVR_SECRET_FILE": str(secret)}
    proc, port, _ = await launch_engine([], ["--grace", "5"], env=env)
    return proc, port


async def test_two_engines_racing_on_the_same_cards(postgres_server: Any, tmp_path: Path) -> None:
    url = postgres_server.create_database("two_engines")
    secret_path = tmp_path / "ivr.secret"
    secret = load_or_create_secret(secret_path)
    now = SystemClock().now_ms
    store = open_store(url)
    await store.open()
    try:
        project = await ops.create_project(store, name="shared", numbers=[ACCESS], service="Local/100@svc/n",
                                           region="CH", warning_s=0, max_simultaneous_calls=3, now_ms=now())
        callers: dict[str, int] = {}
        for c in range(2):
            new = await ops.create_card(store, secret, project=project, minutes=1, note=f"card{c}", now_ms=now())
            card = await store.adjust(new.card.id, CARD_SECONDS - new.card.balance_s, "test balance", now())
            for k in range(3):
                caller = f"+4179000{c}{k:03d}"
                await ops.bind(store, card=card, number=caller, now_ms=now())
                callers[caller] = card.id
    finally:
        await store.close()

    (a, port_a), (b, port_b) = await asyncio.gather(start_engine(url, secret_path), start_engine(url, secret_path))
    calls = 48
    scripts = [CallScript(caller_id=list(callers)[i % len(callers)], extension=ACCESS, uniqueid=f"race.{i}",
                          idle_timeout_s=60, time_scale=0.02,
                          dials=[DialScript(ring_ms=500, talk_ms=25_000)])
               for i in range(calls)]
    await asyncio.gather(*(place_call("127.0.0.1", port_a if i % 2 else port_b, s) for i, s in enumerate(scripts)))
    for proc in (a, b):
        proc.send_signal(signal.SIGTERM)
    for proc in (a, b):
        await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0

    store = open_store(url)
    await store.open()
    try:
        cdrs = await store.cdrs(limit=10_000)
        assert sorted(c.uniqueid for c in cdrs) == sorted(s.uniqueid or "" for s in scripts)  # one per call
        for card_id in set(callers.values()):
            card = await store.card(card_id)
            debits = -sum(e.seconds for e in await store.ledger(card_id) if e.kind == "debit")
            assert debits <= CARD_SECONDS
            assert card.balance_s == CARD_SECONDS - debits
            assert (card.reserved_s, card.active_calls) == (0, 0)
            assert sum(c.debited_s for c in cdrs if c.card_id == card_id) == debits
        assert sum(c.outcome == "ANSWERED" for c in cdrs) >= 2  # calls really went through both ways
    finally:
        await store.close()


async def test_db_copy_moves_every_card_ledger_row_and_cdr_to_postgres(postgres_server: Any, tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    secret = load_or_create_secret(tmp_path / "ivr.secret")
    now = SystemClock().now_ms
    store = open_store(str(db))
    await store.open()
    try:
        project = await ops.create_project(store, name="old", numbers=[ACCESS], service="Local/100@svc/n",
                                           region="CH", now_ms=now())
        ids = []
        for i in range(5):
            new = await ops.create_card(store, secret, project=project, minutes=10 + i, note=f"c{i}", now_ms=now())
            grant = await store.reserve(card_id=new.card.id, uniqueid=f"u{i}", rule=project.rule, max_calls=1,
                                        hold_s=60, now_ms=now())
            from tests.rating.test_store import cdr
            await store.settle_and_record(grant, debit_s=7 * i, cdr=cdr(f"u{i}", new.card), now_ms=now())
            ids.append(new.card.id)
        balances = {i: (await store.card(i)).balance_s for i in ids}
    finally:
        await store.close()
    url = postgres_server.create_database("copied")
    proc = await asyncio.create_subprocess_exec(IVR, "db", "copy", "--from", f"sqlite:{db}", "--to", url,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "checked: 5 cards" in out.decode()
    again = await asyncio.create_subprocess_exec(IVR, "db", "copy", "--from", f"sqlite:{db}", "--to", url,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await again.communicate()
    assert again.returncode == 1 and err.decode().startswith("InvalidInput: the target database already has")
    pg = open_store(url)
    await pg.open()
    try:
        assert {i: (await pg.card(i)).balance_s for i in ids} == balances
        assert len(await pg.cdrs()) == 5
        more = await ops.create_card(pg, secret, project=(await pg.projects())[0], minutes=1, note="new",
                                     now_ms=now())
        assert more.card.id == max(ids) + 1  # identity counters follow the copied ids
    finally:
        await pg.close()
