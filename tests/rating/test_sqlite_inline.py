"""The call path's inline transactions (``rating.store.sqlite``): they run on the event
loop while the write lock is free, go to the worker thread when another connection
(the operator CLI, another engine) holds it, never block the loop, and never change
what a transaction does: no overdraft, rollback on error, the routing snapshot
follows other connections' changes and ignores the call path's own writes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr import operations as ops
from rating.errors import CardInUse
from rating.models import Card, Cdr, Project
from rating.store import sqlite as sqlite_store
from rating.store.sqlite import CHECKPOINT_EVERY, SqliteStore

SECRET = b"s" * 32
NOW = 1_795_000_000_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "ivr.sqlite3") as s:
        yield s


async def _project_and_card(store: SqliteStore, minutes: int = 10) -> tuple[Project, Card]:
    project = await ops.create_project(store, name="p", numbers=["+41441234500"], service="Local/100@svc/n",
                                       region="CH", price_per_minute_cents=0, currency="CHF", now_ms=NOW)
    cards = [new.card for new in await ops.buy_cards(store, SECRET, project=project, minutes=minutes,
                                                     note="", count=1, now_ms=NOW)]
    return project, cards[0]


async def test_reserve_and_settle_run_inline_while_the_lock_is_free(store: SqliteStore) -> None:
    project, card = await _project_and_card(store)
    grant = await store.reserve(card_id=card.id, uniqueid="u1", rule=project.rule, max_calls=1, hold_s=60,
                                now_ms=NOW)
    await store.settle(grant, debit_s=30, uniqueid="u1", now_ms=NOW)
    assert store.thread_fallbacks == 0
    after = await store.card(card.id)
    assert after.balance_s == 600 - 30 and after.reserved_s == 0 and after.active_calls == 0


async def test_a_lock_held_elsewhere_sends_the_transaction_to_the_thread_and_never_blocks_the_loop(
        store: SqliteStore, tmp_path: Path) -> None:
    project, card = await _project_and_card(store)
    cli = sqlite3.connect(tmp_path / "ivr.sqlite3", isolation_level=None)
    cli.execute("BEGIN IMMEDIATE")  # an operator's CLI in the middle of a write
    try:
        reserve = asyncio.create_task(store.reserve(card_id=card.id, uniqueid="u1", rule=project.rule,
                                                    max_calls=1, hold_s=60, now_ms=NOW))
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 0.3:  # the loop keeps running while the reserve waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not reserve.done()
        assert ticks >= 5
        cli.execute("UPDATE cards SET balance_s = balance_s + 60 WHERE id = ?", (card.id,))
        cli.execute("COMMIT")
        grant = await asyncio.wait_for(reserve, 10)
    finally:
        cli.close()
    assert store.thread_fallbacks == 1
    assert grant.available_before_s == 660  # the thread saw the CLI's committed write
    await store.settle(grant, debit_s=10, uniqueid="u1", now_ms=NOW)
    assert store.thread_fallbacks == 1  # the lock is free again: inline
    assert (await store.card(card.id)).balance_s == 650


async def test_a_refused_inline_reservation_holds_nothing(store: SqliteStore) -> None:
    project, card = await _project_and_card(store)
    grant = await store.reserve(card_id=card.id, uniqueid="u1", rule=project.rule, max_calls=1, hold_s=60,
                                now_ms=NOW)
    with pytest.raises(CardInUse):
        await store.reserve(card_id=card.id, uniqueid="u2", rule=project.rule, max_calls=1, hold_s=60,
                            now_ms=NOW)
    after = await store.card(card.id)
    assert after.reserved_s == grant.reserved_s and after.active_calls == 1
    assert store.thread_fallbacks == 0


async def test_a_failing_body_rolls_the_inline_transaction_back(
        store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    project, card = await _project_and_card(store)
    grant = await store.reserve(card_id=card.id, uniqueid="u1", rule=project.rule, max_calls=1, hold_s=60,
                                now_ms=NOW)
    cdr = Cdr(uniqueid="u1", project_id=project.id, card_id=card.id, caller_raw="", caller_e164=None,
              dialled="", destination=None, start_ms=NOW, answer_ms=None, end_ms=NOW, talk_s=10,
              debited_s=0, outcome="ANSWERED", hangup_side="caller")

    def disk_full(db: sqlite3.Connection, cdr: Cdr) -> None:
        raise RuntimeError("disk full")  # after the settlement's statements ran

    monkeypatch.setattr(sqlite_store, "_insert_cdr", disk_full)
    with pytest.raises(RuntimeError, match="disk full"):
        await store.settle_and_record(grant, debit_s=10, cdr=cdr, now_ms=NOW)
    after = await store.card(card.id)
    assert after.balance_s == 600 and after.reserved_s == grant.reserved_s  # the settlement rolled back
    assert [e.kind for e in await store.ledger(card.id)] == ["purchase"]
    monkeypatch.undo()
    assert await store.settle_and_record(grant, debit_s=10, cdr=cdr, now_ms=NOW) == 10  # nothing left open


async def test_the_routing_snapshot_ignores_call_writes_and_follows_other_connections(
        store: SqliteStore, tmp_path: Path) -> None:
    project, card = await _project_and_card(store)
    first = await store.routing()
    grant = await store.reserve(card_id=card.id, uniqueid="u1", rule=project.rule, max_calls=1, hold_s=60,
                                now_ms=NOW)
    await store.settle(grant, debit_s=5, uniqueid="u1", now_ms=NOW)
    assert await store.routing() is first  # the call path's own commits change no configuration
    cli = sqlite3.connect(tmp_path / "ivr.sqlite3", isolation_level=None)
    try:
        cli.execute("UPDATE projects SET service = 'Local/200@svc/n' WHERE id = ?", (project.id,))
    finally:
        cli.close()
    changed = await store.routing()
    assert changed is not first and changed.by_number["+41441234500"].service == "Local/200@svc/n"


async def test_inline_commits_are_checkpointed_from_the_thread(store: SqliteStore, tmp_path: Path) -> None:
    project, card = await _project_and_card(store, minutes=600)
    wal = tmp_path / "ivr.sqlite3-wal"
    for k in range(CHECKPOINT_EVERY * 3):
        grant = await store.reserve(card_id=card.id, uniqueid=f"u{k}", rule=project.rule, max_calls=1,
                                    hold_s=60, now_ms=NOW)
        await store.settle(grant, debit_s=1, uniqueid=f"u{k}", now_ms=NOW)
        await asyncio.sleep(0)  # a call awaits its channel between transactions
    await asyncio.sleep(0.2)
    assert store._checkpoint is not None and store._checkpoint.done()
    with sqlite3.connect(tmp_path / "ivr.sqlite3") as other:
        busy, log_pages, _ = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and wal.exists()
    # Without the thread's checkpoints the WAL would hold every page of 600 commits (~2,400).
    assert log_pages < 1000
