"""The settlement journal on real files and a real SQLite store: durable appends
(mode 0600), torn and damaged lines, replay exactly once (also after a crash
mid-replay, also with two replayers at once), ``ivr journal show|replay``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr import operations as ops
from ivr.clock import SystemClock
from ivr.journal import Entry, Journal, JournalBusy, replay
from rating.billing import BillingRule
from rating.models import Cdr, Grant
from rating.pins import load_or_create_secret
from rating.store.sqlite import SqliteStore

from .conftest import ACCESS, CALLER

IVR = str(Path(sys.executable).with_name("ivr"))


def cdr(uniqueid: str, *, card_id: int | None = 1, talk_s: int = 42, start_ms: int = 1_000) -> Cdr:
    return Cdr(uniqueid=uniqueid, project_id=1, card_id=card_id, caller_raw=CALLER, caller_e164=CALLER,
               dialled=ACCESS, destination="Local/100@svc/n", start_ms=start_ms, answer_ms=start_ms + 3000,
               end_ms=start_ms + 50_000, talk_s=talk_s, debited_s=0, outcome="ANSWERED", hangup_side="caller")


def add(journal: Journal, grant: Grant | None, *, debit_s: int, cdr: Cdr, at_ms: int) -> Entry:
    return journal.append(Entry.new(grant, debit_s=debit_s, cdr=cdr, at_ms=at_ms))


async def store_with_hold(db: Path, *, balance_s: int = 600) -> tuple[SqliteStore, Grant]:
    """A real store, a card with ``balance_s`` and an open hold on it (as a call in its Dial)."""
    store = SqliteStore(db)
    await store.open()
    now = SystemClock().now_ms()
    project = await ops.create_project(store, name="test1", numbers=[ACCESS], service="Local/100@svc/n",
                                       region="CH", now_ms=now)
    new = await ops.create_card(store, load_or_create_secret(Path(str(db) + ".secret")), project=project,
                                minutes=10, note="", now_ms=now)
    if balance_s != 600:
        await store.adjust(new.card.id, balance_s - 600, "test", now)
    grant = await store.reserve(card_id=new.card.id, uniqueid="u.1", rule=BillingRule(), max_calls=1, hold_s=60,
                                now_ms=now)
    return store, grant


async def do_replay(journal: Journal, store: SqliteStore, *, wait: bool = False):  # type: ignore[no-untyped-def]
    return await replay(journal, store, offload=asyncio.to_thread, now_ms=SystemClock().now_ms, wait=wait)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o777])
def test_appends_are_private_and_survive_a_reread(tmp_path: Path, umask: int) -> None:
    journal = Journal(tmp_path / "state")
    old = os.umask(umask)
    try:
        add(journal, None, debit_s=0, cdr=cdr("u.a"), at_ms=5)
        add(journal, None, debit_s=0, cdr=cdr("u.b"), at_ms=6)
    finally:
        os.umask(old)
    assert journal.path.stat().st_mode & 0o777 == 0o600
    assert journal.directory.stat().st_mode & 0o777 == 0o700
    contents = Journal(tmp_path / "state").read()
    assert [e.cdr.uniqueid for e in contents.pending] == ["u.a", "u.b"]
    assert contents.oldest_ms == 5 and not contents.damaged


def test_a_torn_last_line_is_reported_never_replayed_and_the_next_append_is_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    add(journal, None, debit_s=0, cdr=cdr("u.whole"), at_ms=1)
    whole = journal.path.read_bytes()
    add(journal, None, debit_s=0, cdr=cdr("u.torn"), at_ms=2)
    raw = journal.path.read_bytes()
    journal.path.write_bytes(raw[: len(whole) + 40])  # a crash 40 bytes into the second append
    contents = journal.read()
    assert [e.cdr.uniqueid for e in contents.pending] == ["u.whole"]
    assert [(d.line, d.torn) for d in contents.damaged] == [(2, True)]
    add(journal, None, debit_s=0, cdr=cdr("u.after"), at_ms=3)
    contents = journal.read()
    assert [e.cdr.uniqueid for e in contents.pending] == ["u.whole", "u.after"]
    assert [(d.line, d.torn) for d in contents.damaged] == [(2, False)]  # now a damaged line of its own


def test_a_changed_line_fails_its_checksum(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    add(journal, None, debit_s=7, cdr=cdr("u.x"), at_ms=1)
    journal.path.write_bytes(journal.path.read_bytes().replace(b'"debit_s":7', b'"debit_s":0'))
    contents = journal.read()
    assert not contents.pending
    assert contents.damaged[0].reason == "checksum mismatch" and not contents.damaged[0].torn


async def test_replay_debits_exactly_once_writes_one_cdr_and_frees_the_card(tmp_path: Path) -> None:
    store, grant = await store_with_hold(tmp_path / "ivr.sqlite3")
    try:
        journal = Journal(tmp_path / "state")
        add(journal, grant, debit_s=61, cdr=cdr("u.1", card_id=grant.card_id, talk_s=61), at_ms=1234)
        add(journal, None, debit_s=0, cdr=cdr("u.refused", card_id=None, talk_s=0, start_ms=9), at_ms=1300)
        held = await store.card(grant.card_id)
        assert (held.reserved_s, held.active_calls) == (grant.reserved_s, 1)  # in use until the replay

        result = await do_replay(journal, store)
        assert [d for _, d in result.written] == [61, 0] and result.left == 0
        card = await store.card(grant.card_id)
        assert (card.balance_s, card.reserved_s, card.active_calls) == (600 - 61, 0, 0)
        [debit] = [e for e in await store.ledger(grant.card_id) if e.kind == "debit"]
        assert (debit.seconds, debit.at_ms, debit.reference) == (-61, 1234, "u.1")  # the call's time
        assert sorted((c.uniqueid, c.debited_s) for c in await store.cdrs()) == [("u.1", 61), ("u.refused", 0)]
        assert not journal.path.exists()  # compacted

        again = await do_replay(journal, store)  # nothing more
        assert not again.written
        assert len(await store.cdrs()) == 2 and (await store.card(grant.card_id)).balance_s == 539
    finally:
        await store.close()


async def test_a_replay_cut_between_commit_and_done_mark_writes_nothing_twice(tmp_path: Path) -> None:
    store, grant = await store_with_hold(tmp_path / "ivr.sqlite3")
    try:
        journal = Journal(tmp_path / "state")
        add(journal, grant, debit_s=30, cdr=cdr("u.1", card_id=grant.card_id, talk_s=30), at_ms=1)
        add(journal, None, debit_s=0, cdr=cdr("u.2", card_id=None, talk_s=0, start_ms=7), at_ms=2)
        # The first replay committed both to the store, then died before writing its done lines.
        for entry in journal.read().pending:
            assert await entry.write_to(store) is not None
        result = await do_replay(journal, store)
        assert [d for _, d in result.written] == [None, None]  # already there: nothing written
        assert (await store.card(grant.card_id)).balance_s == 570
        assert sorted(c.uniqueid for c in await store.cdrs()) == ["u.1", "u.2"]
    finally:
        await store.close()


async def test_the_debit_is_capped_at_the_hold(tmp_path: Path) -> None:
    store, grant = await store_with_hold(tmp_path / "ivr.sqlite3", balance_s=50)
    try:
        journal = Journal(tmp_path / "state")
        add(journal, grant, debit_s=grant.reserved_s + 500, cdr=cdr("u.1", card_id=grant.card_id), at_ms=1)
        await do_replay(journal, store)
        card = await store.card(grant.card_id)
        assert card.balance_s == 50 - grant.reserved_s >= 0
    finally:
        await store.close()


async def test_a_second_replayer_skips_while_one_holds_the_replay_lock(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state")
    add(journal, None, debit_s=0, cdr=cdr("u.1"), at_ms=1)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT, 0o600);"
        " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
        str(journal.directory / "replay.lock"), stdout=asyncio.subprocess.PIPE)
    try:
        assert holder.stdout is not None and await holder.stdout.readline() == b"held\n"
        async with SqliteStore(tmp_path / "ivr.sqlite3") as store:
            with pytest.raises(JournalBusy):
                await do_replay(journal, store)
            assert await store.cdrs() == []
    finally:
        holder.kill()
        await holder.communicate()


async def test_two_cli_replays_at_once_write_each_call_once(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    store, grant = await store_with_hold(db)
    journal = Journal(Path(str(db) + ".state"))  # the default state directory
    add(journal, grant, debit_s=20, cdr=cdr("u.1", card_id=grant.card_id, talk_s=20), at_ms=1)
    for n in range(30):
        add(journal, None, debit_s=0, cdr=cdr(f"u.r{n}", card_id=None, talk_s=0, start_ms=n), at_ms=2 + n)
    await store.close()
    procs = [await asyncio.create_subprocess_exec(IVR, "--database", str(db), "journal", "replay", "--json",
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
             for _ in range(2)]
    outs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    replayed = [len(json.loads(out)["replayed"]) for out, _ in outs]
    assert sum(replayed) == 31
    async with SqliteStore(db) as store:
        assert len(await store.cdrs()) == 31
        card = await store.card(grant.card_id)
        assert (card.balance_s, card.reserved_s, card.active_calls) == (580, 0, 0)


def test_journal_show_lists_waiting_calls_and_damage(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    journal = Journal(Path(str(db) + ".state"))
    add(journal, Grant(reservation_id=9, card_id=3, reserved_s=600, max_talk_s=600, available_before_s=600),
                   debit_s=61, cdr=cdr("u.show", card_id=3, talk_s=61), at_ms=1)
    with journal.path.open("ab") as f:
        f.write(b'{"kind":"call","id":"half')
    out = subprocess.run([IVR, "--database", str(db), "journal", "show", "--json"], capture_output=True,
                         text=True, check=True).stdout
    data = json.loads(out)
    assert [(p["uniqueid"], p["hold"], p["debit_s"]) for p in data["pending"]] == [("u.show", "9", 61)]
    assert data["damaged"] == [{"line": 2, "reason": "torn: an append that did not finish", "torn": True}]
    text = subprocess.run([IVR, "--database", str(db), "journal", "show"], capture_output=True, text=True,
                          check=True).stdout
    assert "1 call waiting" in text and "u.show" in text and "line 2: torn" in text


def test_journal_replay_against_a_locked_store_is_one_error_line(tmp_path: Path) -> None:
    db = tmp_path / "ivr.sqlite3"
    asyncio.run(_create(db))
    add(Journal(Path(str(db) + ".state")), None, debit_s=0, cdr=cdr("u.1", card_id=None), at_ms=1)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "30"], stdout=subprocess.PIPE)
    try:
        assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
        run = subprocess.run([IVR, "--database", str(db), "journal", "replay"], capture_output=True, text=True,
                             timeout=60)
    finally:
        locker.kill()
        locker.communicate()
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("StoreUnavailable: ")
    assert len(run.stderr.strip().splitlines()) == 1
    assert len(Journal(Path(str(db) + ".state")).read().pending) == 1  # still there


async def _create(db: Path) -> None:
    async with SqliteStore(db):
        pass


# A second process that holds SQLite's write lock (as a long operator transaction would).
LOCKER = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
          " c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(float(sys.argv[2]));"
          " c.execute('ROLLBACK')")
