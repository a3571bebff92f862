"""One store test suite, run against every backend (the ``store`` fixture is
parametrised: SQLite always, PostgreSQL where a server can be started — see
``tests/postgres.py``)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating.billing import BillingRule
from rating.errors import (
    AlreadyExists,
    CardBlocked,
    CardExpired,
    CardInUse,
    InsufficientBalance,
    InvalidDatabase,
    NotFound,
)
from rating.holds import RESERVATION_GRACE_MS
from rating.models import Card, Cdr, Project
from rating.store import open_store, parse_database
from rating.store.base import OperatorStore
from tests.postgres import store_backends

NOW = 1_800_000_000_000
RULE = BillingRule()
_names = itertools.count()


@pytest.fixture(params=store_backends())
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[OperatorStore]:
    database = request.param(request, tmp_path)
    s = open_store(database)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def new_project(store: OperatorStore, **options: Any) -> Project:
    n = next(_names)
    args: dict[str, Any] = dict(name=f"p{n}", numbers=[f"+4144{n:07d}"], service="Local/100@svc/n",
                                fallback=None, ring_timeout_s=30, language="de", region="CH",
                                price_per_minute_cents=50, currency="CHF", rule=RULE, warning_s=60,
                                pin_length=8, max_bound_numbers=3, max_simultaneous_calls=1,
                                card_validity_days=None, now_ms=NOW)
    args.update(options)
    return await store.create_project(**args)


async def new_card(store: OperatorStore, project: Project, seconds: int = 600) -> Card:
    return await store.create_card(project_id=project.id, note="t", pin_hash=f"h{next(_names)}", seconds=seconds,
                                   price_cents=500, now_ms=NOW, expires_ms=None)


def cdr(uniqueid: str, card: Card, debited_s: int = 0) -> Cdr:
    return Cdr(uniqueid=uniqueid, project_id=card.project_id, card_id=card.id, caller_raw="0791234567",
               caller_e164="+41791234567", dialled="+41441234567", destination=None, start_ms=NOW,
               answer_ms=None, end_ms=NOW + 1000, talk_s=0, debited_s=debited_s, outcome="ANSWERED",
               hangup_side="caller")


# --- the database setting ---------------------------------------------------
@pytest.mark.parametrize(("value", "kind", "target"), [
    ("ivr.sqlite3", "sqlite", "ivr.sqlite3"),
    ("/var/lib/ivr/ivr.sqlite3", "sqlite", "/var/lib/ivr/ivr.sqlite3"),
    ("./data/x.db", "sqlite", "./data/x.db"),
    (":memory:", "sqlite", ":memory:"),
    ("sqlite:data/x.db", "sqlite", "data/x.db"),
    ("sqlite:///var/x.db", "sqlite", "/var/x.db"),
    ("postgresql://ivr@127.0.0.1:5432/ivr", "postgresql", "postgresql://ivr@127.0.0.1:5432/ivr"),
    ("postgres://ivr:pw@a:5432,b:5432/ivr?target_session_attrs=read-write", "postgresql",
     "postgres://ivr:pw@a:5432,b:5432/ivr?target_session_attrs=read-write"),
])
def test_the_database_setting_picks_the_backend(value: str, kind: str, target: str) -> None:
    db = parse_database(value)
    assert (db.kind, db.target) == (kind, target)


@pytest.mark.parametrize("value", ["", "  ", "postgresql:", "postgresql:ivr", "mysql://x/y", "http://h/x",
                                   "sqlite://host/x.db", "sqlite:", "sqlite:///"])
def test_a_value_that_is_neither_a_file_nor_a_known_url_is_refused(value: str) -> None:
    with pytest.raises(InvalidDatabase):
        parse_database(value)


def test_a_password_is_not_shown() -> None:
    assert parse_database("postgresql://ivr:secret@h/db").shown() == "postgresql://ivr:***@h/db"


def test_a_read_command_does_not_create_a_missing_file(tmp_path: Any) -> None:
    with pytest.raises(InvalidDatabase, match="no database"):
        open_store(str(tmp_path / "missing.sqlite3"), must_exist=True)
    assert not (tmp_path / "missing.sqlite3").exists()


# --- the contract -------------------------------------------------------------
async def test_reserve_and_settle(store: OperatorStore) -> None:
    p = await new_project(store)
    card = await new_card(store, p, 600)
    grant = await store.reserve(card_id=card.id, uniqueid="u1", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
    assert (grant.reserved_s, grant.max_talk_s, grant.available_before_s) == (600, 600, 600)
    assert [(h.hold_id, h.uniqueid, h.seconds) for h in await store.open_holds()] == [
        (grant.reservation_id, "u1", 600)]
    held = await store.card(card.id)
    assert (held.reserved_s, held.active_calls) == (600, 1)
    with pytest.raises(CardInUse):
        await store.reserve(card_id=card.id, uniqueid="u2", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
    assert await store.settle(grant, debit_s=90, uniqueid="u1", now_ms=NOW + 1) == 90
    assert await store.settle(grant, debit_s=90, uniqueid="u1", now_ms=NOW + 2) == 0  # idempotent
    after = await store.card(card.id)
    assert (after.balance_s, after.reserved_s, after.active_calls) == (510, 0, 0)
    assert [(e.kind, e.seconds, e.reference) for e in await store.ledger(card.id)] == [
        ("purchase", 600, ""), ("debit", -90, "u1")]


async def test_a_settlement_never_debits_more_than_the_hold(store: OperatorStore) -> None:
    card = await new_card(store, await new_project(store), 100)
    grant = await store.reserve(card_id=card.id, uniqueid="u", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
    c = cdr("u", card)
    assert await store.settle_and_record(grant, debit_s=10_000, cdr=c, now_ms=NOW) == 100
    assert (await store.card(card.id)).balance_s == 0
    [row] = await store.cdrs(card_id=card.id)
    assert row.debited_s == 100
    with pytest.raises(InsufficientBalance):
        await store.reserve(card_id=card.id, uniqueid="v", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)


async def test_simultaneous_calls_share_the_free_time(store: OperatorStore) -> None:
    card = await new_card(store, await new_project(store), 600)
    a = await store.reserve(card_id=card.id, uniqueid="a", rule=RULE, max_calls=2, hold_s=60, now_ms=NOW)
    b = await store.reserve(card_id=card.id, uniqueid="b", rule=RULE, max_calls=2, hold_s=60, now_ms=NOW)
    assert (a.reserved_s, b.reserved_s) == (300, 300)


async def test_a_stale_hold_is_released_by_the_next_reservation(store: OperatorStore) -> None:
    card = await new_card(store, await new_project(store), 600)
    await store.reserve(card_id=card.id, uniqueid="crashed", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
    later = NOW + (600 + 60) * 1000 + RESERVATION_GRACE_MS + 1
    grant = await store.reserve(card_id=card.id, uniqueid="next", rule=RULE, max_calls=1, hold_s=60, now_ms=later)
    assert grant.reserved_s == 600
    assert (await store.card(card.id)).active_calls == 1


async def test_refusals(store: OperatorStore) -> None:
    p = await new_project(store)
    with pytest.raises(NotFound):
        await store.reserve(card_id=999_999, uniqueid="x", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
    card = await new_card(store, p)
    await store.set_blocked(card.id, True)
    with pytest.raises(CardBlocked):
        await store.reserve(card_id=card.id, uniqueid="x", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
    await store.set_blocked(card.id, False)
    await store.set_expiry(card.id, NOW - 1)
    with pytest.raises(CardExpired):
        await store.reserve(card_id=card.id, uniqueid="x", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)


async def test_bind_an_unknown_card_is_not_found(store: OperatorStore) -> None:
    p = await new_project(store)
    with pytest.raises(NotFound):
        await store.bind(project_id=p.id, caller="+41791234567", card_id=999_999, now_ms=NOW, source="ivr",
                         max_bound=3)


async def test_binding_keeps_the_newest_numbers_and_reserve_bound_uses_it(store: OperatorStore) -> None:
    p = await new_project(store)
    card = await new_card(store, p)
    for i in range(4):
        await store.bind(project_id=p.id, caller=f"+4179000000{i}", card_id=card.id, now_ms=NOW + i, source="ivr",
                         max_bound=3)
    assert [b.caller for b in await store.bindings(card.id)] == ["+41790000001", "+41790000002", "+41790000003"]
    assert (await store.card(card.id)).activated_ms == NOW
    assert await store.reserve_bound(project_id=p.id, caller="+41790000000", uniqueid="u", rule=RULE, max_calls=1,
                                     hold_s=60, now_ms=NOW) is None
    found = await store.reserve_bound(project_id=p.id, caller="+41790000003", uniqueid="u", rule=RULE,
                                      max_calls=1, hold_s=60, now_ms=NOW)
    assert found is not None and found.grant is not None and found.card.id == card.id
    again = await store.reserve_bound(project_id=p.id, caller="+41790000003", uniqueid="v", rule=RULE,
                                      max_calls=1, hold_s=60, now_ms=NOW)
    assert again is not None and again.grant is None and isinstance(again.refusal, CardInUse)


async def test_binding_above_the_limit_is_refused_without_eviction_and_kept_in_history(
        store: OperatorStore) -> None:
    p = await new_project(store)
    card = await new_card(store, p)
    for i in range(3):
        result = await store.bind(project_id=p.id, caller=f"+4179000000{i}", card_id=card.id, now_ms=NOW + i,
                                  source="ivr", max_bound=2, evict=False, actor=f"call{i}")
        assert result.bound is (i < 2)
    assert [b.caller for b in await store.bindings(card.id)] == ["+41790000000", "+41790000001"]
    evicting = await store.bind(project_id=p.id, caller="+41790000009", card_id=card.id, now_ms=NOW + 9,
                                source="operator", max_bound=2, evict=True, actor="anna")
    assert evicting.evicted == ("+41790000000",)
    await store.unbind(p.id, "+41790000001", actor="anna", now_ms=NOW + 10)
    assert [(e.caller, e.action, e.source, e.actor) for e in await store.binding_history(card.id)] == [
        ("+41790000000", "bind", "ivr", "call0"), ("+41790000001", "bind", "ivr", "call1"),
        ("+41790000002", "refused", "ivr", "call2"), ("+41790000000", "unbind", "evicted", "anna"),
        ("+41790000009", "bind", "operator", "anna"), ("+41790000001", "unbind", "operator", "anna")]


async def test_names_and_numbers_are_unique(store: OperatorStore) -> None:
    p = await new_project(store)
    with pytest.raises(AlreadyExists):
        await new_project(store, name=p.name)
    with pytest.raises(AlreadyExists):
        await new_project(store, numbers=list(p.numbers))
    card = await new_card(store, p)
    with pytest.raises(AlreadyExists):
        await store.create_card(project_id=p.id, note="", pin_hash="dup", seconds=60, price_cents=0, now_ms=NOW,
                                expires_ms=None)
        await store.create_card(project_id=p.id, note="", pin_hash="dup", seconds=60, price_cents=0, now_ms=NOW,
                                expires_ms=None)
    assert (await store.card(card.id)).balance_s == 600


async def test_routing_sees_configuration_changes(store: OperatorStore) -> None:
    p = await new_project(store)
    routing = await store.routing()
    assert routing.by_number[p.numbers[0]].id == p.id
    await store.add_blocked(project_id=p.id, pattern="+4190.", direction="outbound", reason="", added_by="t",
                            now_ms=NOW)
    assert [b.pattern for b in (await store.routing()).blocks(p.id, "outbound")] == ["+4190."]
    await store.update_project(p.id, changes={}, add_numbers=["+41449999999"])
    assert (await store.routing()).by_number["+41449999999"].id == p.id
    # issue 12: what a bound line whose card is used up hears is a project setting
    assert not (await store.routing()).by_number[p.numbers[0]].new_pin_when_used_up
    await store.update_project(p.id, changes={"new_pin_when_used_up": 1})
    assert (await store.routing()).by_number[p.numbers[0]].new_pin_when_used_up


async def test_pin_failures_and_account(store: OperatorStore) -> None:
    p = await new_project(store)
    caps = dict(window_ms=3_600_000, project_cap=3, entering_cap=2, entering_ms=120_000)
    line = await store.begin_pin_attempt(project_id=p.id, caller_key="+41791234567", now_ms=NOW, line_cap=2, **caps)
    anon = await store.begin_pin_attempt(project_id=p.id, caller_key="anonymous", now_ms=NOW, line_cap=None, **caps)
    assert line.attempt_id is not None and anon.attempt_id is not None
    busy = await store.begin_pin_attempt(project_id=p.id, caller_key="+41790000000", now_ms=NOW, line_cap=2, **caps)
    assert (busy.attempt_id, busy.refused, busy.entering) == (None, "busy", 2)
    assert await store.end_pin_attempt(line.attempt_id, wrong=True, since_ms=NOW - 1) == 1
    assert await store.end_pin_attempt(anon.attempt_id, wrong=False, since_ms=0) == 0  # an empty entry
    again = await store.begin_pin_attempt(project_id=p.id, caller_key="+41791234567", now_ms=NOW + 1, line_cap=2,
                                          **caps)
    assert (again.by_caller, again.in_project) == (1, 1) and again.attempt_id is not None
    assert await store.end_pin_attempt(again.attempt_id, wrong=True, since_ms=NOW - 1) == 2
    refused = await store.begin_pin_attempt(project_id=p.id, caller_key="+41791234567", now_ms=NOW + 2, line_cap=2,
                                            **caps)
    assert (refused.attempt_id, refused.refused) == (None, "line")
    assert [(f.caller_key, f.failures) for f in await store.pin_failures(since_ms=NOW - 1)] == [("+41791234567", 2)]
    assert await store.active_card_count(p.id, NOW) == 0
    assert await store.clear_pin_failures(project_id=p.id, caller_key="+41791234567") == 2
    assert await store.pin_failures(since_ms=0) == []
    assert (await store.account_settings()).lock_limit_cents > 0
    owed = await store.account_owed_cents()
    await new_card(store, p)
    assert await store.account_owed_cents() == owed + 500
    assert await store.active_card_count(p.id, NOW) == 1


# --- interleavings --------------------------------------------------------------
OPS = st.lists(st.tuples(st.sampled_from(["reserve", "settle", "bind"]), st.integers(0, 2), st.integers(0, 900)),
               min_size=1, max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, balances=st.lists(st.integers(1, 700), min_size=3, max_size=3), max_calls=st.integers(1, 3))
async def test_interleaved_reserve_settle_bind_never_overdraw(store: OperatorStore, ops: list[tuple[str, int, int]],
                                                             balances: list[int], max_calls: int) -> None:
    """Any interleaving of holds, settlements and bindings, run concurrently: every card's
    balance is its purchase minus its ledger's debits, never below zero; what is still
    held is exactly the open grants; settling everything leaves nothing held."""
    p = await new_project(store, max_simultaneous_calls=max_calls)
    cards = [await new_card(store, p, b) for b in balances]
    grants: list[Any] = []
    uid = itertools.count()

    async def step(op: str, i: int, n: int) -> None:
        card = cards[i]
        if op == "reserve":
            try:
                grants.append(await store.reserve(card_id=card.id, uniqueid=f"u{next(uid)}", rule=RULE,
                                                  max_calls=max_calls, hold_s=60, now_ms=NOW))
            except (CardInUse, InsufficientBalance):
                pass
        elif op == "settle" and grants:
            grant = grants[n % len(grants)]
            await store.settle(grant, debit_s=n, uniqueid="s", now_ms=NOW)
        elif op == "bind":
            await store.bind(project_id=p.id, caller=f"+417900{n:05d}", card_id=card.id, now_ms=NOW, source="ivr",
                             max_bound=2)

    await asyncio.gather(*(step(*o) for o in ops))
    for card, balance in zip(cards, balances, strict=True):
        now = await store.card(card.id)
        debits = sum(e.seconds for e in await store.ledger(card.id) if e.kind == "debit")
        assert now.balance_s == balance + debits >= 0
        assert len(await store.bindings(card.id)) <= 2
    for grant in grants:
        await store.settle(grant, debit_s=grant.reserved_s, uniqueid="end", now_ms=NOW)
    for card in cards:
        now = await store.card(card.id)
        assert (now.reserved_s, now.active_calls) == (0, 0)


# --- schema versions ----------------------------------------------------------------
async def test_an_older_or_newer_schema_is_refused_until_migrated(tmp_path: Any) -> None:
    import sqlite3

    from rating.errors import SchemaMismatch
    from rating.store._schema import MIGRATIONS

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaMismatch, match="ivr db migrate"):
        await open_store(str(path)).open()
    migrating = open_store(str(path), schema="migrate")
    await migrating.open()
    assert (migrating.schema_found, await migrating.schema_version()) == (1, len(MIGRATIONS))
    await migrating.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaMismatch, match="newer"):
        await open_store(str(path), schema="migrate").open()


# --- several engines on one PostgreSQL -------------------------------------------------
async def test_two_stores_racing_on_the_same_cards_never_overdraw(postgres_server: Any) -> None:
    """Two stores (two pools: two engines) hold and settle on the same three cards at once."""
    url = postgres_server.create_database("race_stores")
    a, b = open_store(url), open_store(url)
    await a.open()
    await b.open()
    try:
        p = await new_project(a, max_simultaneous_calls=3)
        cards = [await new_card(a, p, 300) for _ in range(3)]
        uid = itertools.count()

        async def call(store: OperatorStore, card: Card) -> None:
            n = next(uid)
            try:
                grant = await store.reserve(card_id=card.id, uniqueid=f"c{n}", rule=RULE, max_calls=3, hold_s=60,
                                            now_ms=NOW)
            except (CardInUse, InsufficientBalance):
                return
            await asyncio.sleep(0)
            await store.settle_and_record(grant, debit_s=grant.reserved_s, cdr=cdr(f"c{n}", card), now_ms=NOW)

        await asyncio.gather(*(call(a if i % 2 else b, cards[i % 3]) for i in range(120)))
        for card in cards:
            now = await b.card(card.id)
            debits = -sum(e.seconds for e in await b.ledger(card.id) if e.kind == "debit")
            assert debits <= 300 and now.balance_s == 300 - debits
            assert (now.reserved_s, now.active_calls) == (0, 0)
            assert sum(c.debited_s for c in await b.cdrs(card_id=card.id)) == debits
    finally:
        await a.close()
        await b.close()


async def test_a_change_through_one_store_reaches_the_other_within_max_age(postgres_server: Any) -> None:
    url = postgres_server.create_database("config_change")
    a, b = open_store(url), open_store(url)
    await a.open()
    await b.open()
    try:
        p = await new_project(a)
        assert p.numbers[0] in (await b.routing(max_age_s=0.2)).by_number
        await a.add_blocked(project_id=None, pattern="+41901234567", direction="inbound", reason="", added_by="t",
                            now_ms=NOW)
        await asyncio.sleep(0.3)
        assert [x.pattern for x in (await b.routing(max_age_s=0.2)).blocked] == ["+41901234567"]
    finally:
        await a.close()
        await b.close()


async def test_postgres_going_away_fails_promptly_and_the_pool_reconnects(postgres_server: Any) -> None:
    import time as _time

    from rating.errors import StoreUnavailable

    url = postgres_server.create_database("outage")
    failures: list[str] = []
    store = open_store(url, on_failure=failures.append)  # the engine counts these: ivr_store_unavailable_total
    await store.open()
    try:
        p = await new_project(store)
        card = await new_card(store, p, 600)
        postgres_server.stop()
        started = _time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.reserve(card_id=card.id, uniqueid="down", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
        assert _time.monotonic() - started < 30  # prompt (about 2 s when the host answers; generous when loaded)
        assert failures == ["reserve"]
        postgres_server.start()
        grant = await store.reserve(card_id=card.id, uniqueid="up", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
        assert await store.settle(grant, debit_s=10, uniqueid="up", now_ms=NOW) == 10
    finally:
        if not postgres_server.running:
            postgres_server.start()
        await store.close()


async def test_postgres_refuses_an_older_or_newer_schema(postgres_server: Any) -> None:
    import asyncpg  # type: ignore[import-untyped]  # no type information

    from rating.errors import SchemaMismatch
    from rating.store._schema import MIGRATIONS

    url = postgres_server.create_database("schema_check")
    store = open_store(url)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(url)
    await conn.execute("UPDATE ivr_schema SET version = $1", len(MIGRATIONS) + 1)
    await conn.close()
    with pytest.raises(SchemaMismatch, match="newer"):
        await open_store(url).open()


async def test_settle_hold_by_id_once_with_one_cdr(store: OperatorStore) -> None:
    from rating.models import HoldCall

    p = await new_project(store)
    card = await new_card(store, p, 600)
    grant = await store.reserve(card_id=card.id, uniqueid="h1", rule=RULE, max_calls=1, hold_s=60, now_ms=NOW,
                                call=HoldCall(caller_raw="0791234567", caller_e164="+41791234567",
                                              dialled="+41441234567", start_ms=NOW - 5000,
                                              asterisk="10.0.0.7"))
    [held] = await store.open_holds(card_id=card.id)
    assert (held.uniqueid, held.caller_raw, held.asterisk) == ("h1", "0791234567", "10.0.0.7")
    first = await store.settle_hold(grant.reservation_id, uniqueid="h1", talk_ms=30_500, cdr=cdr("h1", card),
                                    now_ms=NOW + 40_000)
    again = await store.settle_hold(grant.reservation_id, uniqueid="h1", talk_ms=30_500, cdr=cdr("h1", card),
                                    now_ms=NOW + 41_000)
    assert (first.state, again.state) == ("settled", "already_settled")
    assert first.debited_s > 0 and (await store.card(card.id)).balance_s == 600 - first.debited_s
    assert await store.settle_and_record(grant, debit_s=31, cdr=cdr("h1", card), now_ms=NOW + 42_000) == 0
    assert await store.open_holds(card_id=card.id) == []
    [row] = await store.cdrs(card_id=card.id)
    assert (row.uniqueid, row.start_ms, row.debited_s) == ("h1", NOW - 5000, first.debited_s)


# --- money (issue 12): a CDR keeps its price; payments are corrected, never edited ----
async def test_a_cdr_keeps_the_price_it_was_rated_at(store: OperatorStore) -> None:
    p = await new_project(store)
    card = await new_card(store, p)
    rated = cdr("rated", card, debited_s=96)
    rated.price_per_minute_cents, rated.currency = 70, "CHF"       # the engine's snapshot of the project
    await store.write_cdr(rated)
    await store.write_cdr(cdr("filled", card, debited_s=96))       # no price given: the project's, now
    await store.update_project(p.id, changes={"price_per_minute_cents": 500})
    await store.write_cdr(cdr("later", card, debited_s=96))
    await store.write_cdr(Cdr(uniqueid="refused", project_id=None, card_id=None, caller_raw="", caller_e164=None,
                              dialled="", destination=None, start_ms=NOW, answer_ms=None, end_ms=NOW, talk_s=0,
                              debited_s=0, outcome="FAILED", hangup_side="caller"))
    got = {c.uniqueid: (c.price_per_minute_cents, c.currency) for c in await store.find_cdrs()}
    assert got == {"rated": (70, "CHF"), "filled": (50, "CHF"), "later": (500, "CHF"), "refused": (None, None)}
    assert [(c.uniqueid, c.price_per_minute_cents) for c in await store.cdrs(card_id=card.id)][-1] == ("rated", 70)


async def test_payment_corrections_never_take_back_more_than_the_payment(store: OperatorStore) -> None:
    from rating.errors import InvalidInput

    p = await new_project(store)
    await new_card(store, p)                                                   # 5.00 owed
    first = await store.add_payment(amount_cents=150, currency="CHF", reference="bank", entered_by="erika",
                                    now_ms=NOW)
    second = await store.add_payment(amount_cents=1000, currency="CHF", reference="", entered_by="", now_ms=NOW + 1)
    assert await store.account_owed_cents() == 500 - 1150
    fix = await store.correct_payment(payment_id=first, amount_cents=150, reference="typo", entered_by="hans",
                                      now_ms=NOW + 2)
    assert (fix.corrects, fix.amount_cents, fix.currency, fix.reference, fix.entered_by) == (first, 150, "CHF",
                                                                                             "typo", "hans")
    assert (await store.payment(first)).left_cents == 0
    with pytest.raises(InvalidInput, match="at most 0.00 CHF"):
        await store.correct_payment(payment_id=first, amount_cents=1, reference="", entered_by="", now_ms=NOW + 3)
    with pytest.raises(InvalidInput, match="is a correction of payment"):
        await store.correct_payment(payment_id=fix.id, amount_cents=1, reference="", entered_by="", now_ms=NOW + 3)
    with pytest.raises(NotFound):
        await store.correct_payment(payment_id=9999, amount_cents=1, reference="", entered_by="", now_ms=NOW + 3)
    with pytest.raises(InvalidInput):
        await store.correct_payment(payment_id=second, amount_cents=0, reference="", entered_by="", now_ms=NOW + 3)
    # Two corrections of 6.00 of one 10.00 payment at once: exactly one is taken.
    results = await asyncio.gather(*(store.correct_payment(payment_id=second, amount_cents=600, reference=str(i),
                                                           entered_by="", now_ms=NOW + 4) for i in range(2)),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["InvalidInput", "Payment"]
    assert (await store.payment(second)).corrected_cents == 600
    assert await store.account_owed_cents() == 500 - 1000 + 600
    assert await store.account_owed_cents(before_ms=NOW + 2) == 500 - 1150
    lines = [(a.kind, a.amount_cents, a.entry_id, a.corrects) for a in await store.account_lines()]
    assert lines == [("purchase", 500, None, None), ("payment", -150, first, None), ("payment", -1000, second, None),
                     ("correction", 150, fix.id, first), ("correction", 600, fix.id + 1, second)]
    assert [x.id for x in await store.payments(last=2)] == [fix.id, fix.id + 1]


# --- a batch of cards is one transaction (issue 12) -----------------------------------
async def test_a_batch_of_cards_is_bought_whole_or_not_at_all(store: OperatorStore) -> None:
    p = await new_project(store)
    taken = await store.create_card(project_id=p.id, note="t", pin_hash="taken", seconds=60, price_cents=50,
                                    now_ms=NOW, expires_ms=None)
    owed, cards = await store.account_owed_cents(), await store.card_count(p.id)
    seen: list[list[int]] = []
    made = await store.create_cards(project_id=p.id, note="fair", count=3, pin_hashes=iter(["taken", "a", "b", "c"]),
                                    seconds=60, price_cents=50, now_ms=NOW, expires_ms=None,
                                    before_commit=lambda made: seen.append([c.id for c, _ in made]))
    assert [h for _, h in made] == ["a", "b", "c"]                    # the taken PIN was skipped
    assert seen == [[c.id for c, _ in made]] and taken.id not in seen[0]
    assert [await store.card(c.id) for c, _ in made] == [c for c, _ in made]
    assert (await store.card_count(p.id), await store.account_owed_cents()) == (cards + 3, owed + 150)
    owed, cards = await store.account_owed_cents(), await store.card_count(p.id)
    with pytest.raises(AlreadyExists, match="card 3 of 3: nothing was bought"):
        await store.create_cards(project_id=p.id, note="", count=3, pin_hashes=iter(["d", "a", "e"]), seconds=60,
                                 price_cents=50, now_ms=NOW, expires_ms=None)

    def fail(made: Any) -> None:
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        await store.create_cards(project_id=p.id, note="", count=2, pin_hashes=iter(["f", "g"]), seconds=60,
                                 price_cents=50, now_ms=NOW, expires_ms=None, before_commit=fail)
    assert (await store.card_count(p.id), await store.account_owed_cents()) == (cards, owed)
    assert await store.card_by_pin_hash(p.id, "d") is None and await store.card_by_pin_hash(p.id, "f") is None


def test_pin_sequence_gives_every_pin_once_in_a_random_order() -> None:
    from rating.pins import pin_sequence

    pins = list(pin_sequence(4))
    assert sorted(pins) == [f"{n:04d}" for n in range(10_000)]
    assert pins != sorted(pins) and list(pin_sequence(4)) != pins
    long = pin_sequence(16)
    assert all(len(next(long)) == 16 for _ in range(1000))      # lazy: never the 10^16 list


async def test_two_batches_at_once_never_share_a_pin(store: OperatorStore) -> None:
    """Both offered the same PINs in the same order (PostgreSQL: two transactions at once,
    the second waits on the first's rows, then finds them taken): disjoint, both whole."""
    p = await new_project(store)
    offered = [f"x{i}" for i in range(10)]
    first, second = await asyncio.gather(*(
        store.create_cards(project_id=p.id, note=str(n), count=5, pin_hashes=iter(offered), seconds=60,
                           price_cents=50, now_ms=NOW, expires_ms=None) for n in range(2)))
    assert sorted(h for _, h in first + second) == sorted(offered)
    assert await store.card_count(p.id) == 10


@pytest.mark.parametrize("with_quota", [False, True], ids=["plain", "monthly-quota"])
async def test_the_engine_and_the_settle_route_racing_on_one_hold_leave_one_cdr(store: OperatorStore,
                                                                                with_quota: bool) -> None:
    """The engine's own settlement (settle_and_record) and another engine's settle route
    (settle_hold) on the same hold at the same moment: one debit and exactly one CDR,
    whichever wins (on PostgreSQL the two run on two pooled connections at once; the
    monthly-quota case takes the store's other settlement path). Before the fix, PostgreSQL
    wrote a second CDR, of 0 s."""
    from rating.zones import QuotaPeriod

    quota = QuotaPeriod(month="2027-01", limit_s=10) if with_quota else None
    p = await new_project(store)
    cards = [await new_card(store, p, 600) for _ in range(12)]
    for round_, card in enumerate(cards):
        uid = f"race{round_}"
        grant = await store.reserve(card_id=card.id, uniqueid=uid, rule=RULE, max_calls=1, hold_s=60, now_ms=NOW)
        engine_side = store.settle_and_record(grant, debit_s=30, cdr=cdr(uid, card), now_ms=NOW + 40_000,
                                              quota=quota)
        route_side = store.settle_hold(grant.reservation_id, uniqueid=uid, talk_ms=30_000, cdr=cdr(uid, card),
                                       now_ms=NOW + 40_000, quota=quota)
        if round_ % 2:
            route_result, engine_debit = await asyncio.gather(route_side, engine_side)
        else:
            engine_debit, route_result = await asyncio.gather(engine_side, route_side)
        rows = await store.cdrs(card_id=card.id)
        balance = (await store.card(card.id)).balance_s
        assert len(rows) == 1, (round_, [(r.debited_s, r.outcome) for r in rows])
        assert rows[0].debited_s == 600 - balance > 0
        assert (engine_debit > 0) + (route_result.state == "settled") == 1   # one of them settled it
