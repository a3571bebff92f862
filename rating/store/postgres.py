"""The PostgreSQL backend: several engines (and the CLI) on one database.

Driver: asyncpg (MagicStack, well kept, binary protocol, its own pool; libpq-style
multi-host URLs with ``target_session_attrs=read-write`` so a reconnect follows a
failover to the new primary). Every transaction goes through ``_transaction``: one
pooled connection, ``BEGIN`` … ``COMMIT`` (asyncpg's ``transaction()``), driver
errors translated there (``_translated``) so none leaves this module.

No overdraft across engines: ``reserve`` locks the card row (``SELECT … FOR
UPDATE``) in one short transaction, asks ``rating.holds.grant_hold`` what to hold
and writes it with a conditional UPDATE; ``settle`` locks the card row first too (one
lock order: no deadlocks) and debits ``settlement_debit``.

Configuration changes reach every engine through a change counter: triggers on the
routing tables bump ``ivr_config.version``; ``routing()`` trusts its snapshot for
``max_age_s`` and then compares the counter (one cheap query) before reloading.

Failing well: connecting and every statement are bounded (``CONNECT_TIMEOUT_S``,
``COMMAND_TIMEOUT_S``): PostgreSQL unreachable or failing over is StoreUnavailable
within about 2 s, never a hang; the pool drops broken connections and opens new ones
by itself on the next use.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from ..billing import BillingRule
from ..errors import (
    AlreadyExists,
    CardUnusable,
    InsufficientBalance,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)
from ..holds import grant_hold, is_stale, settlement_debit
from ..models import (
    AccountLine,
    AccountSettings,
    Binding,
    BlockedNumber,
    BoundReservation,
    Card,
    Cdr,
    Grant,
    HoldCall,
    HoldSettlement,
    LedgerEntry,
    OpenHold,
    Project,
    Routing,
)
from ..routes import Route
from ..settlement import settlement
from ..zones import QuotaPeriod, charge
from ._rows import ROUTE_COLS, default_timezone, policy_of, route_of, tariff_of
from ._schema import MIGRATIONS, SchemaMode, check_schema
from .base import FailureObserver, StoreObserver

__all__ = ["PostgresStore", "postgres_script"]

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (a pool proxy at run time); asyncpg ships no complete stubs

CONNECT_TIMEOUT_S = 1.5
COMMAND_TIMEOUT_S = 5.0
PIN_FAILURE_RETENTION_MS = 7 * 86_400_000

_CARD_COLS = ("id, project_id, note, blocked, balance_s, reserved_s, active_calls, price_cents, "
              "created_ms, activated_ms, expires_ms")
_PROJECT_UPDATABLE = frozenset({
    "service", "fallback", "ring_timeout_s", "language", "region", "price_per_minute_cents", "currency",
    "connect_s", "minimum_s", "initial_s", "increment_s", "warning_s", "pin_length", "max_bound_numbers",
    "max_simultaneous_calls", "card_validity_days", "timezone", "trunk", "allow_countries", "block_types",
    "zone_factors", "quota_s"})
_ACCOUNT_UPDATABLE = frozenset({"currency", "info_limit_cents", "lock_limit_cents", "suspend_calls"})
_BLOCKED_COLS = "id, project_id, pattern, direction, reason, created_ms, added_by"
_CDR_COLS = ("uniqueid, project_id, card_id, caller_raw, caller_e164, dialled, destination, start_ms,"
             " answer_ms, end_ms, talk_s, debited_s, outcome, hangup_side, call_type, route_position, leg, zone,"
             " number_type, factor_pm, quota_used_s")
_PROJECT_COLS = ("id, name, service, fallback, ring_timeout_s, language, region, price_per_minute_cents,"
                 " currency, connect_s, minimum_s, initial_s, increment_s, warning_s, pin_length,"
                 " max_bound_numbers, max_simultaneous_calls, card_validity_days, timezone, trunk,"
                 " allow_countries, block_types, zone_factors, quota_s")
# Tables whose changes the routing snapshot must see (a trigger bumps ivr_config.version).
_ROUTING_TABLES = ("projects", "access_numbers", "blacklist", "routes")

# --- schema: the shared migrations, translated -------------------------------
# Migrations written by hand for PostgreSQL where the translation would not do.
POSTGRES_OVERRIDES: dict[int, str] = {}

_CONFIG_COUNTER = """
CREATE TABLE IF NOT EXISTS ivr_config (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
INSERT INTO ivr_config VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION ivr_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE ivr_config SET version = version + 1 WHERE id = 1; RETURN NULL; END $$;
"""


def postgres_script(number: int) -> str:
    """Migration ``number`` (1-based) in PostgreSQL's dialect: 64-bit integers (ms times),
    identity keys, COALESCE for IFNULL."""
    if number in POSTGRES_OVERRIDES:
        return POSTGRES_OVERRIDES[number]
    sql = MIGRATIONS[number - 1]
    sql = re.sub(r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", sql)
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    return re.sub(r"\bIFNULL\(", "COALESCE(", sql)


def _triggers() -> str:
    """The change counter's triggers on every routing table that exists."""
    return "".join(
        f"CREATE OR REPLACE TRIGGER ivr_config_{t} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION ivr_config_changed();\n" for t in _ROUTING_TABLES)


_PLACEHOLDER = re.compile(r"\?")
_converted: dict[str, str] = {}


def _q(sql: str) -> str:
    """``?`` placeholders (as the SQLite backend writes them) to ``$1``, ``$2`` …"""
    out = _converted.get(sql)
    if out is None:
        counter = iter(range(1, 1000))
        out = _converted[sql] = _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
    return out


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """The boundary: a driver error becomes the ``rating.errors`` it means."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError as exc:
        raise NotFound(f"{operation}: a referenced row does not exist") from exc
    except asyncpg.UniqueViolationError as exc:
        raise AlreadyExists(f"{operation}: already exists ({exc.constraint_name})") from exc
    except (asyncpg.CheckViolationError, asyncpg.NotNullViolationError, asyncpg.DataError) as exc:
        raise InvalidInput(f"{operation}: refused by the database ({exc})") from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise StoreUnavailable(f"{operation}: {type(exc).__name__}: {exc}") from exc


def _card(row: Sequence[Any]) -> Card:
    return Card(id=row[0], project_id=row[1], note=row[2], blocked=bool(row[3]), balance_s=row[4],
                reserved_s=row[5], active_calls=row[6], price_cents=row[7], created_ms=row[8],
                activated_ms=row[9], expires_ms=row[10])


def _project(r: Sequence[Any], numbers: tuple[str, ...], routes: tuple[Route, ...]) -> Project:
    return Project(id=r[0], name=r[1], numbers=numbers, service=r[2], fallback=r[3], ring_timeout_s=r[4],
                   language=r[5], region=r[6], price_per_minute_cents=r[7], currency=r[8],
                   rule=BillingRule(connect_s=r[9], minimum_s=r[10], initial_s=r[11], increment_s=r[12]),
                   warning_s=r[13], pin_length=r[14], max_bound_numbers=r[15],
                   max_simultaneous_calls=r[16], card_validity_days=r[17], routes=routes,
                   timezone=r[18] or default_timezone(r[6]), trunk=r[19], policy=policy_of(r[20], r[21]),
                   tariff=tariff_of(r[22], r[23]))


def _routes_by_project(rows: Sequence[Sequence[Any]]) -> dict[int, tuple[Route, ...]]:
    out: dict[int, list[Route]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(route_of(tuple(row)))
    return {k: tuple(v) for k, v in out.items()}


async def _quota_left(db: Conn, card_id: int, quota: QuotaPeriod | None) -> int:
    if quota is None or quota.limit_s <= 0:
        return 0
    used = await db.fetchval(_q("SELECT used_s FROM card_quota WHERE card_id = ? AND month = ?"),
                             card_id, quota.month)
    return max(0, quota.limit_s - (used or 0))


async def _reserve(db: Conn, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int, hold_s: int,
                   now_ms: int, quota: QuotaPeriod | None = None, call: HoldCall | None = None) -> Grant:
    """Inside a transaction: see ``PostgresStore.reserve``."""
    # The row lock serialises every engine's holds on this card until COMMIT.
    row = await db.fetchrow(_q(f"SELECT {_CARD_COLS} FROM cards WHERE id = ? FOR UPDATE"), card_id)
    if row is None:
        raise NotFound(f"no card {card_id}")
    released = 0
    for res_id, seconds, expires_ms in await db.fetch(_q(
            "SELECT id, seconds, expires_ms FROM reservations WHERE card_id = ? AND state = 'open'"), card_id):
        if is_stale(expires_ms, now_ms):  # a crashed engine's hold
            await db.execute(_q("UPDATE reservations SET state = 'released' WHERE id = ?"), res_id)
            await db.execute(_q("UPDATE cards SET reserved_s = reserved_s - ?,"
                                " active_calls = GREATEST(active_calls - 1, 0) WHERE id = ?"), seconds, card_id)
            released += 1
    if released:
        row = await db.fetchrow(_q(f"SELECT {_CARD_COLS} FROM cards WHERE id = ?"), card_id)
    plan = grant_hold(_card(row), rule=rule, max_calls=max_calls, hold_s=hold_s, now_ms=now_ms)
    status = await db.execute(_q(
        "UPDATE cards SET reserved_s = reserved_s + ?, active_calls = active_calls + 1"
        " WHERE id = ? AND balance_s - reserved_s >= ? AND active_calls < ?"),
        plan.seconds, card_id, plan.seconds, max_calls)
    if status != "UPDATE 1":  # pragma: no cover - the row lock makes this unreachable
        raise InsufficientBalance(f"card {card_id} changed under the reservation")
    reservation_id = await db.fetchval(_q(
        "INSERT INTO reservations (card_id, uniqueid, seconds, created_ms, expires_ms, max_talk_s, connect_s,"
        " minimum_s, initial_s, increment_s, caller_raw, caller_e164, dialled, call_start_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"),
        card_id, uniqueid, plan.seconds, now_ms, plan.expires_ms, plan.max_talk_s, rule.connect_s,
        rule.minimum_s, rule.initial_s, rule.increment_s, call.caller_raw if call else None,
        call.caller_e164 if call else None, call.dialled if call else None, call.start_ms if call else None)
    return Grant(reservation_id=reservation_id, card_id=card_id, reserved_s=plan.seconds,
                 max_talk_s=plan.max_talk_s, available_before_s=plan.available_before_s,
                 quota_left_s=await _quota_left(db, card_id, quota))


async def _settle(db: Conn, grant: Grant, *, debit_s: int, uniqueid: str, now_ms: int, factor_pm: int = 1000,
                  quota: QuotaPeriod | None = None) -> tuple[int, int]:
    """Inside a transaction: see ``PostgresStore.settle``. Returns (seconds debited, quota used)."""
    # Card row first, as reserve does: one lock order for every engine.
    await db.execute(_q("SELECT 1 FROM cards WHERE id = ? FOR UPDATE"), grant.card_id)
    status = await db.execute(_q("UPDATE reservations SET state = 'settled' WHERE id = ? AND state = 'open'"),
                              grant.reservation_id)
    if status != "UPDATE 1":
        return 0, 0  # settled or released already: idempotent
    charged, quota_used = charge(max(0, debit_s), factor_pm, await _quota_left(db, grant.card_id, quota))
    if quota is not None and quota_used:
        await db.execute(_q("INSERT INTO card_quota (card_id, month, used_s) VALUES (?, ?, ?)"
                            " ON CONFLICT (card_id, month) DO UPDATE SET used_s = card_quota.used_s + excluded.used_s"),
                         grant.card_id, quota.month, quota_used)
    debit = settlement_debit(grant.reserved_s, charged)
    await db.execute(_q("UPDATE cards SET balance_s = balance_s - ?, reserved_s = reserved_s - ?,"
                        " active_calls = active_calls - 1 WHERE id = ?"), debit, grant.reserved_s, grant.card_id)
    if debit:
        await db.execute(_q("INSERT INTO ledger (card_id, at_ms, kind, seconds, reference)"
                            " VALUES (?, ?, 'debit', ?, ?)"), grant.card_id, now_ms, -debit, uniqueid)
    return debit, quota_used


async def _settle_hold(db: Conn, hold_id: int, *, uniqueid: str, talk_ms: int, cdr: Cdr, now_ms: int,
                       limit_s: int | None, factor_pm: int, quota: QuotaPeriod | None) -> HoldSettlement:
    """Inside a transaction: see ``SqliteStore.settle_hold`` (the same steps)."""
    row = await db.fetchrow(_q(
        "SELECT r.card_id, r.uniqueid, r.seconds, r.state, r.max_talk_s, r.connect_s, r.minimum_s,"
        " r.initial_s, r.increment_s, r.caller_raw, r.caller_e164, r.dialled, r.call_start_ms, r.created_ms,"
        " c.project_id, p.connect_s, p.minimum_s, p.initial_s, p.increment_s"
        " FROM reservations r JOIN cards c ON c.id = r.card_id JOIN projects p ON p.id = c.project_id"
        " WHERE r.id = ?"), hold_id)
    if row is None or row[1] != uniqueid:
        return HoldSettlement(state="unknown", hold_id=hold_id)
    (card_id, _, reserved_s, state, max_talk_s, connect_s, minimum_s, initial_s, increment_s, caller_raw,
     caller_e164, dialled, start_ms, created_ms, project_id, *project_rule) = tuple(row)
    if state != "open":
        return HoldSettlement(state="already_settled" if state == "settled" else state, hold_id=hold_id,
                              card_id=card_id)
    rule = (BillingRule(connect_s=connect_s, minimum_s=minimum_s, initial_s=initial_s, increment_s=increment_s)
            if connect_s is not None else BillingRule(*project_rule))
    if max_talk_s is None:
        max_talk_s = rule.max_talk(reserved_s)
    if limit_s is not None:
        max_talk_s = min(max_talk_s, limit_s)
    decided = settlement(rule, talk_ms=talk_ms, max_talk_s=max_talk_s, reserved_s=reserved_s)
    grant = Grant(reservation_id=hold_id, card_id=card_id, reserved_s=reserved_s, max_talk_s=max_talk_s,
                  available_before_s=0)
    debited, quota_used = await _settle(db, grant, debit_s=decided.debit_s, uniqueid=uniqueid, now_ms=now_ms,
                                        factor_pm=factor_pm, quota=quota)
    cdr.project_id, cdr.card_id = project_id, card_id
    if caller_raw is not None:
        cdr.caller_raw, cdr.caller_e164 = caller_raw, caller_e164
    cdr.dialled = dialled if dialled is not None else cdr.dialled
    cdr.start_ms = start_ms if start_ms is not None else created_ms
    cdr.talk_s, cdr.debited_s, cdr.quota_used_s, cdr.factor_pm = decided.talk_s, debited, quota_used, factor_pm
    await _insert_cdr(db, cdr)
    return HoldSettlement(state="settled", hold_id=hold_id, card_id=card_id, talk_s=decided.talk_s,
                          debited_s=debited)


async def _insert_cdr(db: Conn, cdr: Cdr) -> None:
    await db.execute(
        _q(f"INSERT INTO cdrs ({_CDR_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"),
        cdr.uniqueid, cdr.project_id, cdr.card_id, cdr.caller_raw, cdr.caller_e164, cdr.dialled,
        cdr.destination, cdr.start_ms, cdr.answer_ms, cdr.end_ms, cdr.talk_s, cdr.debited_s,
        cdr.outcome, cdr.hangup_side, cdr.call_type, cdr.route_position, cdr.leg, cdr.zone, cdr.number_type,
        cdr.factor_pm, cdr.quota_used_s)


async def _sync_legacy_destinations(db: Conn, project_id: int) -> None:
    rows = await db.fetch(_q("SELECT position, destination, conditions FROM routes WHERE project_id = ?"
                             " ORDER BY position"), project_id)
    if not rows:
        raise InvalidInput("a project needs at least one forwarding rule")
    fallback = next((r[1] for r in rows[1:] if r[2] == "busy,noanswer"), None)
    await db.execute(_q("UPDATE projects SET service = ?, fallback = ? WHERE id = ?"), rows[0][1], fallback,
                     project_id)


async def _renumber_routes(db: Conn, order: Sequence[int]) -> None:
    # Two passes: positions are not unique-constrained, but keep them positive throughout.
    for position, route_id in enumerate(order, start=1):
        await db.execute(_q("UPDATE routes SET position = ? WHERE id = ?"), position, route_id)


async def _route_ids(db: Conn, project_id: int) -> list[int]:
    return [r[0] for r in await db.fetch(_q("SELECT id FROM routes WHERE project_id = ? ORDER BY position"),
                                         project_id)]


async def _insert_route(db: Conn, project_id: int, route: Route, position: int | None) -> None:
    ids = await _route_ids(db, project_id)
    hours = route.hours.text() if route.hours else ""
    closed = route.hours.closed_text() if route.hours else ""
    new_id = await db.fetchval(_q(
        "INSERT INTO routes (project_id, position, destination, conditions, hours, closed_on, ring_timeout_s)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"),
        project_id, len(ids) + 1, route.destination, route.conditions_text(), hours, closed, route.ring_timeout_s)
    at = len(ids) if position is None else max(0, min(position - 1, len(ids)))
    ids.insert(at, new_id)
    await _renumber_routes(db, ids)


async def _legacy_to_routes(db: Conn, project_id: int, changes: Mapping[str, Any]) -> None:
    """As ``sqlite._legacy_to_routes``: ``--service`` and ``--fallback`` edit the first rules."""
    if "service" in changes:
        await db.execute(_q("UPDATE routes SET destination = ? WHERE project_id = ? AND position ="
                            " (SELECT MIN(position) FROM routes WHERE project_id = ?)"),
                         changes["service"], project_id, project_id)
    if "fallback" in changes:
        rows = await db.fetch(_q(
            "SELECT id FROM routes WHERE project_id = ? AND conditions = 'busy,noanswer' AND position >"
            " (SELECT MIN(position) FROM routes WHERE project_id = ?) ORDER BY position LIMIT 1"),
            project_id, project_id)
        fallback = changes["fallback"]
        if rows and fallback is None:
            await db.execute(_q("DELETE FROM routes WHERE id = ?"), rows[0][0])
        elif rows:
            await db.execute(_q("UPDATE routes SET destination = ? WHERE id = ?"), fallback, rows[0][0])
        elif fallback is not None:
            await db.execute(_q("UPDATE routes SET position = position + 1 WHERE project_id = ? AND position > 1"),
                             project_id)
            await db.execute(_q("INSERT INTO routes (project_id, position, destination, conditions)"
                                " VALUES (?, 2, ?, 'busy,noanswer')"), project_id, fallback)


class PostgresStore:
    def __init__(self, url: str, *, observer: StoreObserver | None = None, schema: SchemaMode = "check",
                 min_size: int = 1, max_size: int = 10, on_failure: FailureObserver | None = None) -> None:
        self._on_failure = on_failure
        self.url = url
        self._pool: Any = None
        self._observer = observer
        self._schema: SchemaMode = schema
        self._sizes = (min_size, max_size)
        self._routing: Routing | None = None
        self._routing_version = -1
        self._routing_checked = float("-inf")
        self.schema_found: int | None = None

    # --- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        """Connect (the pool) and check the schema. Raises StoreUnavailable, SchemaMismatch."""
        with _translated("connect"):
            try:
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=self._sizes[0], max_size=self._sizes[1], timeout=CONNECT_TIMEOUT_S,
                    command_timeout=COMMAND_TIMEOUT_S, max_inactive_connection_lifetime=60.0)
            except (ValueError, asyncpg.ClientConfigurationError) as exc:  # a URL libpq would refuse too
                raise InvalidInput(f"database URL: {exc}") from exc
        try:
            self.schema_found = await self._transaction("migrate", self._migrate)
        except BaseException:
            await self.close()
            raise

    async def _migrate(self, db: Conn) -> int:
        # One migrator at a time, whichever engine or CLI starts first.
        await db.execute("SELECT pg_advisory_xact_lock(4873)")
        await db.execute("CREATE TABLE IF NOT EXISTS ivr_schema (version INTEGER NOT NULL)")
        version = await db.fetchval("SELECT version FROM ivr_schema")
        if version is None:
            await db.execute("INSERT INTO ivr_schema VALUES (0)")
            version = 0
        steps = check_schema(version, len(MIGRATIONS), self._schema)
        for number in steps:
            await db.execute(postgres_script(number))
            await db.execute("UPDATE ivr_schema SET version = $1", number)
        if steps:
            await db.execute(_CONFIG_COUNTER)
            await db.execute(_triggers())
        return int(version)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), COMMAND_TIMEOUT_S)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        return int(await self._fetchval("SELECT version FROM ivr_schema"))

    # --- the one transaction helper ------------------------------------------
    async def _transaction(self, operation: str, body: Callable[[Conn], Awaitable[T]]) -> T:
        """``body(conn)`` in one transaction on a pooled connection; driver errors translated,
        anything ``body`` raises rolls back and propagates. The observer hears of every success."""
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        started = time.perf_counter()
        try:
            with _translated(operation):
                async with self._pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn, conn.transaction():
                    result = await body(conn)
        except StoreUnavailable:
            if self._on_failure is not None:
                self._on_failure(operation)
            raise
        if self._observer is not None:
            self._observer(operation, time.perf_counter() - started)
        return result

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            with _translated("read"):
                return list(await self._pool.fetch(_q(sql), *args, timeout=COMMAND_TIMEOUT_S))
        except StoreUnavailable:
            if self._on_failure is not None:
                self._on_failure("read")
            raise

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self._fetch(sql, *args)
        return rows[0][0] if rows else None

    # --- projects ----------------------------------------------------------
    async def create_project(self, *, name: str, numbers: Sequence[str], service: str,
                             fallback: str | None, ring_timeout_s: int, language: str, region: str,
                             price_per_minute_cents: int, currency: str, rule: BillingRule,
                             warning_s: int, pin_length: int, max_bound_numbers: int,
                             max_simultaneous_calls: int, card_validity_days: int | None,
                             now_ms: int) -> Project:
        async def body(db: Conn) -> None:
            project_id = await db.fetchval(_q(
                "INSERT INTO projects (name, service, fallback, ring_timeout_s, language, region,"
                " price_per_minute_cents, currency, connect_s, minimum_s, initial_s, increment_s,"
                " warning_s, pin_length, max_bound_numbers, max_simultaneous_calls,"
                " card_validity_days, created_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id"),
                name, service, fallback, ring_timeout_s, language, region, price_per_minute_cents,
                currency, rule.connect_s, rule.minimum_s, rule.initial_s, rule.increment_s,
                warning_s, pin_length, max_bound_numbers, max_simultaneous_calls, card_validity_days, now_ms)
            for number in numbers:
                await db.execute(_q("INSERT INTO access_numbers (number, project_id) VALUES (?, ?)"), number,
                                 project_id)
            await db.execute(_q("INSERT INTO routes (project_id, position, destination, conditions)"
                                " VALUES (?, 1, ?, 'always')"), project_id, service)
            if fallback is not None:
                await db.execute(_q("INSERT INTO routes (project_id, position, destination, conditions)"
                                    " VALUES (?, 2, ?, 'busy,noanswer')"), project_id, fallback)

        try:
            await self._transaction("create_project", body)
        except AlreadyExists as exc:
            raise AlreadyExists(f"project name or access number already in use ({exc})") from exc
        project = await self.project_by_name(name)
        assert project is not None
        return project

    async def _project(self, where: str, arg: Any) -> Project | None:
        rows = await self._fetch(f"SELECT {_PROJECT_COLS} FROM projects WHERE {where}", arg)
        if not rows:
            return None
        pid = rows[0][0]
        numbers = await self._fetch("SELECT number FROM access_numbers WHERE project_id = ? ORDER BY number", pid)
        routes = await self._fetch(f"SELECT {ROUTE_COLS} FROM routes WHERE project_id = ? ORDER BY position", pid)
        return _project(rows[0], tuple(n[0] for n in numbers), _routes_by_project(routes).get(pid, ()))

    async def project_by_name(self, name: str) -> Project | None:
        return await self._project("name = ?", name)

    async def project_by_id(self, project_id: int) -> Project | None:
        return await self._project("id = ?", project_id)

    async def routing(self, *, max_age_s: float = 0.0) -> Routing:
        """Projects by access number and every blocked number, as one snapshot. Trusted for
        ``max_age_s``; then the change counter (bumped by triggers, whichever engine or CLI
        wrote) says whether to reload."""
        if self._routing is not None and time.monotonic() - self._routing_checked < max_age_s:
            return self._routing

        async def load(db: Conn) -> tuple[int, list[Any], list[Any], list[Any], list[Any]] | None:
            version = await db.fetchval("SELECT version FROM ivr_config WHERE id = 1")
            if version == self._routing_version and self._routing is not None:
                return None
            return (version, await db.fetch(f"SELECT {_PROJECT_COLS} FROM projects"),
                    await db.fetch("SELECT number, project_id FROM access_numbers ORDER BY number"),
                    await db.fetch(f"SELECT {_BLOCKED_COLS} FROM blacklist ORDER BY id"),
                    await db.fetch(f"SELECT {ROUTE_COLS} FROM routes ORDER BY project_id, position"))

        loaded = await self._transaction("routing", load)  # one snapshot of all four tables
        self._routing_checked = time.monotonic()
        if loaded is None:
            assert self._routing is not None
            return self._routing
        version, project_rows, number_rows, blocked_rows, route_rows = loaded
        numbers_of: dict[int, list[str]] = {}
        for number, project_id in number_rows:
            numbers_of.setdefault(project_id, []).append(number)
        routes_of = _routes_by_project(route_rows)
        projects = {r[0]: _project(r, tuple(numbers_of.get(r[0], ())), routes_of.get(r[0], ()))
                    for r in project_rows}
        self._routing = Routing(
            by_number={n: projects[pid] for pid, ns in numbers_of.items() for n in ns},
            regions=tuple(sorted({p.region for p in projects.values()})),
            blocked=tuple(BlockedNumber(*r) for r in blocked_rows))
        self._routing_version = version
        return self._routing

    async def projects(self) -> list[Project]:
        rows = await self._fetch("SELECT name FROM projects ORDER BY name")
        out = [await self.project_by_name(r[0]) for r in rows]
        return [p for p in out if p is not None]

    # --- cards -------------------------------------------------------------
    async def create_card(self, *, project_id: int, note: str, pin_hash: str, seconds: int,
                          price_cents: int, now_ms: int, expires_ms: int | None) -> Card:
        """Raises AlreadyExists when the PIN hash is taken in the project (caller retries)."""
        if seconds <= 0:
            raise InvalidInput("a card needs a positive number of seconds")

        async def body(db: Conn) -> int:
            card_id: int = await db.fetchval(_q(
                "INSERT INTO cards (project_id, note, pin_hash, balance_s, price_cents, created_ms,"
                " expires_ms) VALUES (?,?,?,?,?,?,?) RETURNING id"),
                project_id, note, pin_hash, seconds, price_cents, now_ms, expires_ms)
            await db.execute(_q("INSERT INTO ledger (card_id, at_ms, kind, seconds, amount_cents, reference)"
                                " VALUES (?, ?, 'purchase', ?, ?, '')"), card_id, now_ms, seconds, price_cents)
            return card_id

        try:
            card_id = await self._transaction("create_card", body)
        except AlreadyExists as exc:
            raise AlreadyExists("PIN already used in this project") from exc
        return await self.card(card_id)

    async def card(self, card_id: int) -> Card:
        rows = await self._fetch(f"SELECT {_CARD_COLS} FROM cards WHERE id = ?", card_id)
        if not rows:
            raise NotFound(f"no card {card_id}")
        return _card(rows[0])

    async def card_by_pin_hash(self, project_id: int, pin_hash: str) -> Card | None:
        rows = await self._fetch(f"SELECT {_CARD_COLS} FROM cards WHERE project_id = ? AND pin_hash = ?",
                                 project_id, pin_hash)
        return _card(rows[0]) if rows else None

    async def card_for_caller(self, project_id: int, caller: str) -> Card | None:
        rows = await self._fetch(
            f"SELECT {_CARD_COLS} FROM cards WHERE id ="
            " (SELECT card_id FROM bindings WHERE project_id = ? AND caller = ?)", project_id, caller)
        return _card(rows[0]) if rows else None

    async def cards(self, project_id: int | None = None) -> list[Card]:
        if project_id is None:
            rows = await self._fetch(f"SELECT {_CARD_COLS} FROM cards ORDER BY id")
        else:
            rows = await self._fetch(f"SELECT {_CARD_COLS} FROM cards WHERE project_id = ? ORDER BY id", project_id)
        return [_card(r) for r in rows]

    async def _update_card(self, operation: str, sql: str, args: Sequence[Any], card_id: int) -> None:
        async def body(db: Conn) -> None:
            if await db.execute(_q(sql), *args) == "UPDATE 0":
                raise NotFound(f"no card {card_id}")

        await self._transaction(operation, body)

    async def set_pin_hash(self, card_id: int, pin_hash: str) -> None:
        try:
            await self._update_card("set_pin", "UPDATE cards SET pin_hash = ? WHERE id = ?", (pin_hash, card_id),
                                    card_id)
        except AlreadyExists as exc:
            raise AlreadyExists("PIN already used in this project") from exc

    async def set_blocked(self, card_id: int, blocked: bool) -> None:
        await self._update_card("set_blocked", "UPDATE cards SET blocked = ? WHERE id = ?", (int(blocked), card_id),
                                card_id)

    async def set_expiry(self, card_id: int, expires_ms: int | None) -> Card:
        await self._update_card("set_expiry", "UPDATE cards SET expires_ms = ? WHERE id = ?", (expires_ms, card_id),
                                card_id)
        return await self.card(card_id)

    async def recharge(self, card_id: int, seconds: int, price_cents: int, now_ms: int) -> Card:
        if seconds <= 0:
            raise InvalidInput("recharge needs a positive number of seconds")

        async def body(db: Conn) -> None:
            if await db.execute(_q("UPDATE cards SET balance_s = balance_s + ? WHERE id = ?"),
                                seconds, card_id) == "UPDATE 0":
                raise NotFound(f"no card {card_id}")
            await db.execute(_q("INSERT INTO ledger (card_id, at_ms, kind, seconds, amount_cents)"
                                " VALUES (?, ?, 'recharge', ?, ?)"), card_id, now_ms, seconds, price_cents)

        await self._transaction("recharge", body)
        return await self.card(card_id)

    async def adjust(self, card_id: int, seconds: int, reason: str, now_ms: int) -> Card:
        """Correct a card's balance by ``seconds`` (signed). Raises NotFound, InsufficientBalance."""
        async def body(db: Conn) -> None:
            if await db.execute(_q("UPDATE cards SET balance_s = balance_s + ? WHERE id = ?"
                                   " AND balance_s - reserved_s + ? >= 0"), seconds, card_id, seconds) == "UPDATE 0":
                if await db.fetchval(_q("SELECT 1 FROM cards WHERE id = ?"), card_id) is None:
                    raise NotFound(f"no card {card_id}")
                raise InsufficientBalance(f"card {card_id} has not {-seconds} s free to take")
            await db.execute(_q("INSERT INTO ledger (card_id, at_ms, kind, seconds, reference)"
                                " VALUES (?, ?, 'adjustment', ?, ?)"), card_id, now_ms, seconds, reason)

        await self._transaction("adjust", body)
        return await self.card(card_id)

    async def activate(self, card_id: int, now_ms: int) -> None:
        async def body(db: Conn) -> None:
            await db.execute(_q("UPDATE cards SET activated_ms = ? WHERE id = ? AND activated_ms IS NULL"),
                             now_ms, card_id)

        await self._transaction("activate", body)

    # --- bindings ----------------------------------------------------------
    async def bind(self, *, project_id: int, caller: str, card_id: int, now_ms: int, source: str,
                   max_bound: int) -> None:
        """As ``SqliteStore.bind``. Raises NotFound for an unknown card."""
        async def body(db: Conn) -> None:
            if await db.execute(_q("UPDATE cards SET activated_ms = COALESCE(activated_ms, ?) WHERE id = ?"),
                                now_ms, card_id) == "UPDATE 0":
                raise NotFound(f"no card {card_id}")
            await db.execute(_q(
                "INSERT INTO bindings (project_id, caller, card_id, bound_ms, source) VALUES (?,?,?,?,?)"
                " ON CONFLICT (project_id, caller) DO UPDATE SET card_id = excluded.card_id,"
                " bound_ms = excluded.bound_ms, source = excluded.source"),
                project_id, caller, card_id, now_ms, source)
            await db.execute(_q(
                "DELETE FROM bindings WHERE card_id = ? AND caller NOT IN (SELECT caller FROM bindings"
                " WHERE card_id = ? ORDER BY bound_ms DESC, caller DESC LIMIT ?)"), card_id, card_id, max_bound)

        await self._transaction("bind", body)

    async def unbind(self, project_id: int, caller: str) -> None:
        async def body(db: Conn) -> None:
            if await db.execute(_q("DELETE FROM bindings WHERE project_id = ? AND caller = ?"),
                                project_id, caller) == "DELETE 0":
                raise NotFound(f"{caller} is not bound in this project")

        await self._transaction("unbind", body)

    async def bindings(self, card_id: int) -> list[Binding]:
        rows = await self._fetch("SELECT caller, card_id, bound_ms, source FROM bindings WHERE card_id = ?"
                                 " ORDER BY bound_ms, caller", card_id)
        return [Binding(*r) for r in rows]

    # --- reserve and settle -----------------------------------------------
    async def reserve(self, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int,
                      hold_s: int, now_ms: int, quota: QuotaPeriod | None = None,
                      call: HoldCall | None = None) -> Grant:
        """As ``SqliteStore.reserve``: the card row locked, one short transaction.

        Raises:
            NotFound, CardBlocked, CardExpired, CardInUse, InsufficientBalance, StoreUnavailable.
        """
        async def body(db: Conn) -> Grant:
            return await _reserve(db, card_id=card_id, uniqueid=uniqueid, rule=rule, max_calls=max_calls,
                                  hold_s=hold_s, now_ms=now_ms, quota=quota, call=call)

        return await self._transaction("reserve", body)

    async def reserve_bound(self, *, project_id: int, caller: str, uniqueid: str, rule: BillingRule,
                            max_calls: int, hold_s: int, now_ms: int,
                            quota: QuotaPeriod | None = None,
                            call: HoldCall | None = None) -> BoundReservation | None:
        async def body(db: Conn) -> BoundReservation | None:
            row = await db.fetchrow(_q(f"SELECT {_CARD_COLS} FROM cards WHERE id ="
                                       " (SELECT card_id FROM bindings WHERE project_id = ? AND caller = ?)"),
                                    project_id, caller)
            if row is None:
                return None
            card = _card(row)
            try:
                async with db.transaction():  # a savepoint: a refusal leaves nothing behind
                    grant = await _reserve(db, card_id=card.id, uniqueid=uniqueid, rule=rule, max_calls=max_calls,
                                           hold_s=hold_s, now_ms=now_ms, quota=quota, call=call)
            except CardUnusable as refusal:
                return BoundReservation(card=card, grant=None, refusal=refusal)
            return BoundReservation(card=card, grant=grant, refusal=None)

        return await self._transaction("reserve", body)

    async def settle(self, grant: Grant, *, debit_s: int, uniqueid: str, now_ms: int,
                     factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int:
        """As ``SqliteStore.settle``: idempotent, never more than the hold."""
        async def body(db: Conn) -> int:
            return (await _settle(db, grant, debit_s=debit_s, uniqueid=uniqueid, now_ms=now_ms,
                                  factor_pm=factor_pm, quota=quota))[0]

        return await self._transaction("settle", body)

    async def settle_and_record(self, grant: Grant, *, debit_s: int, cdr: Cdr, now_ms: int,
                                factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int:
        async def body(db: Conn) -> int:
            # One CDR per call: a hold settled already (by the settle route, with its CDR) writes none.
            if await db.fetchval(_q("SELECT state FROM reservations WHERE id = ?"), grant.reservation_id) == "settled":
                return 0
            cdr.debited_s, cdr.quota_used_s = await _settle(db, grant, debit_s=debit_s, uniqueid=cdr.uniqueid,
                                                            now_ms=now_ms, factor_pm=factor_pm, quota=quota)
            cdr.factor_pm = factor_pm
            await _insert_cdr(db, cdr)
            return cdr.debited_s

        return await self._transaction("settle_and_record", body)

    async def settle_hold(self, hold_id: int, *, uniqueid: str, talk_ms: int, cdr: Cdr, now_ms: int,
                          limit_s: int | None = None, factor_pm: int = 1000,
                          quota: QuotaPeriod | None = None) -> HoldSettlement:
        """As ``SqliteStore.settle_hold``: by hold id, from any engine, idempotent, one CDR."""
        async def body(db: Conn) -> HoldSettlement:
            return await _settle_hold(db, hold_id, uniqueid=uniqueid, talk_ms=talk_ms, cdr=cdr, now_ms=now_ms,
                                      limit_s=limit_s, factor_pm=factor_pm, quota=quota)

        return await self._transaction("settle", body)

    async def open_holds(self, *, card_id: int | None = None) -> list[OpenHold]:
        """Holds not settled or released yet (every engine's), oldest first."""
        sql = ("SELECT r.id, r.uniqueid, r.card_id, c.project_id, p.name, r.seconds, r.max_talk_s, r.created_ms,"
               " r.expires_ms, r.caller_raw FROM reservations r JOIN cards c ON c.id = r.card_id"
               " JOIN projects p ON p.id = c.project_id WHERE r.state = 'open'")
        args: tuple[Any, ...] = ()
        if card_id is not None:
            sql += " AND r.card_id = ?"
            args = (card_id,)
        rows = await self._fetch(sql + " ORDER BY r.id", *args)
        return [OpenHold(*tuple(r)) for r in rows]

    # --- ledger, CDRs ------------------------------------------------------
    async def ledger(self, card_id: int) -> list[LedgerEntry]:
        rows = await self._fetch("SELECT id, card_id, at_ms, kind, seconds, amount_cents, reference"
                                 " FROM ledger WHERE card_id = ? ORDER BY id", card_id)
        return [LedgerEntry(*r) for r in rows]

    async def write_cdr(self, cdr: Cdr) -> None:
        await self._transaction("write_cdr", lambda db: _insert_cdr(db, cdr))

    async def cdrs(self, *, card_id: int | None = None, limit: int = 1000) -> list[Cdr]:
        if card_id is not None:
            rows = await self._fetch(f"SELECT {_CDR_COLS} FROM cdrs WHERE card_id = ? ORDER BY id DESC LIMIT ?",
                                     card_id, limit)
        else:
            rows = await self._fetch(f"SELECT {_CDR_COLS} FROM cdrs ORDER BY id DESC LIMIT ?", limit)
        return [Cdr(*r) for r in rows]

    async def find_cdrs(self, *, since_ms: int | None = None, until_ms: int | None = None,
                        project_id: int | None = None, card_id: int | None = None,
                        outcomes: Sequence[str] = (), last: int | None = None, call_types: Sequence[str] = (),
                        zones: Sequence[str] = ()) -> list[Cdr]:
        clauses: list[str] = []
        args: list[Any] = []
        for clause, value in (("start_ms >= ?", since_ms), ("start_ms < ?", until_ms),
                              ("project_id = ?", project_id), ("card_id = ?", card_id)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        for column, values in (("outcome", outcomes), ("call_type", call_types), ("zone", zones)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                args.extend(values)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        limit = ""
        if last is not None:
            limit = " LIMIT ?"
            args.append(last)
        rows = await self._fetch(f"SELECT {_CDR_COLS} FROM cdrs {where} ORDER BY start_ms DESC, id DESC{limit}",
                                 *args)
        return [Cdr(*r) for r in reversed(rows)]

    # --- blocked numbers ----------------------------------------------------
    async def add_blocked(self, *, project_id: int | None, pattern: str, direction: str, reason: str,
                          added_by: str, now_ms: int) -> BlockedNumber:
        async def body(db: Conn) -> int:
            entry_id: int = await db.fetchval(_q(
                "INSERT INTO blacklist (project_id, pattern, direction, reason, created_ms, added_by)"
                " VALUES (?,?,?,?,?,?) RETURNING id"), project_id, pattern, direction, reason, now_ms, added_by)
            return entry_id

        try:
            entry_id = await self._transaction("blacklist_add", body)
        except AlreadyExists as exc:
            raise AlreadyExists(f"{pattern} ({direction}) is already blocked there") from exc
        return BlockedNumber(entry_id, project_id, pattern, direction, reason, now_ms, added_by)

    async def blocked(self, *, project_id: int | None = None, include_global: bool = True,
                      only_global: bool = False, direction: str | None = None) -> list[BlockedNumber]:
        clauses: list[str] = []
        args: list[Any] = []
        if only_global:
            clauses.append("project_id IS NULL")
        elif project_id is not None:
            clauses.append("(project_id = ?" + (" OR project_id IS NULL)" if include_global else ")"))
            args.append(project_id)
        if direction is not None:
            clauses.append("direction = ?")
            args.append(direction)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self._fetch(f"SELECT {_BLOCKED_COLS} FROM blacklist {where}"
                                 " ORDER BY project_id IS NOT NULL, project_id, direction, pattern", *args)
        return [BlockedNumber(*r) for r in rows]

    async def blacklist_remove(self, *, project_id: int | None, pattern: str, direction: str) -> None:
        async def body(db: Conn) -> None:
            if await db.execute(_q("DELETE FROM blacklist WHERE COALESCE(project_id, 0) = ? AND pattern = ?"
                                   " AND direction = ?"), project_id or 0, pattern, direction) == "DELETE 0":
                raise NotFound(f"{pattern} is not blocked there")

        await self._transaction("blacklist_remove", body)

    async def import_blocked(self, *, project_id: int | None, entries: Sequence[tuple[str, str, str, str]],
                             replace: bool, now_ms: int) -> tuple[int, int, int]:
        async def body(db: Conn) -> tuple[int, int]:
            added = removed = 0
            if replace:
                status = await db.execute(_q("DELETE FROM blacklist WHERE COALESCE(project_id, 0) = ?"),
                                          project_id or 0)
                removed = int(status.split()[-1])
            for pattern, direction, reason, added_by in entries:
                status = await db.execute(_q(
                    "INSERT INTO blacklist (project_id, pattern, direction, reason, created_ms, added_by)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING"),
                    project_id, pattern, direction, reason, now_ms, added_by)
                added += int(status.split()[-1])
            return added, removed

        added, removed = await self._transaction("blacklist_import", body)
        return added, len(entries) - added, removed

    # --- PIN brute-force throttle -----------------------------------------
    async def record_pin_failure(self, project_id: int, caller_key: str, now_ms: int) -> None:
        async def body(db: Conn) -> None:
            await db.execute(_q("INSERT INTO pin_failures (project_id, caller_key, at_ms) VALUES (?,?,?)"),
                             project_id, caller_key, now_ms)
            await db.execute(_q("DELETE FROM pin_failures WHERE project_id = ? AND at_ms < ?"),
                             project_id, now_ms - PIN_FAILURE_RETENTION_MS)

        await self._transaction("pin_failure", body)

    async def pin_failures_since(self, project_id: int, caller_key: str, since_ms: int) -> tuple[int, int]:
        rows = await self._fetch("SELECT COUNT(*) FILTER (WHERE caller_key = ?), COUNT(*) FROM pin_failures"
                                 " WHERE project_id = ? AND at_ms >= ?", caller_key, project_id, since_ms)
        return int(rows[0][0]), int(rows[0][1])

    # --- projects: operator changes -----------------------------------------
    async def update_project(self, project_id: int, *, changes: Mapping[str, Any],
                             add_numbers: Sequence[str] = (), remove_numbers: Sequence[str] = ()) -> Project:
        unknown = set(changes) - _PROJECT_UPDATABLE
        if unknown:
            raise InvalidInput(f"project settings cannot change: {', '.join(sorted(unknown))}")

        async def body(db: Conn) -> None:
            if await db.fetchval(_q("SELECT 1 FROM projects WHERE id = ? FOR UPDATE"), project_id) is None:
                raise NotFound(f"no project with id {project_id}")
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                await db.execute(_q(f"UPDATE projects SET {assignments} WHERE id = ?"), *changes.values(),
                                 project_id)
            await _legacy_to_routes(db, project_id, changes)
            for number in remove_numbers:
                if await db.execute(_q("DELETE FROM access_numbers WHERE number = ? AND project_id = ?"),
                                    number, project_id) == "DELETE 0":
                    raise NotFound(f"{number} is not an access number of this project")
            for number in add_numbers:
                owner = await db.fetchval(_q("SELECT p.name FROM access_numbers a JOIN projects p"
                                             " ON p.id = a.project_id WHERE a.number = ?"), number)
                if owner is not None:
                    raise AlreadyExists(f"{number} is already an access number of project {owner}")
                await db.execute(_q("INSERT INTO access_numbers (number, project_id) VALUES (?, ?)"), number,
                                 project_id)
            if not await db.fetchval(_q("SELECT COUNT(*) FROM access_numbers WHERE project_id = ?"), project_id):
                raise InvalidInput("a project needs at least one access number")

        await self._transaction("update_project", body)
        project = await self.project_by_id(project_id)
        assert project is not None
        return project

    async def _change_routes(self, operation: str, project_id: int,
                             body: Callable[[Conn], Awaitable[None]]) -> Project:
        async def run(db: Conn) -> None:
            if await db.fetchval(_q("SELECT 1 FROM projects WHERE id = ? FOR UPDATE"), project_id) is None:
                raise NotFound(f"no project with id {project_id}")
            await body(db)
            await _sync_legacy_destinations(db, project_id)

        await self._transaction(operation, run)
        project = await self.project_by_id(project_id)
        assert project is not None
        return project

    async def add_route(self, project_id: int, route: Route, *, position: int | None = None) -> Project:
        return await self._change_routes("route_add", project_id,
                                         lambda db: _insert_route(db, project_id, route, position))

    async def remove_route(self, project_id: int, position: int) -> Project:
        async def body(db: Conn) -> None:
            ids = await _route_ids(db, project_id)
            if not 1 <= position <= len(ids):
                raise NotFound(f"no rule {position} (the project has {len(ids)})")
            await db.execute(_q("DELETE FROM routes WHERE id = ?"), ids[position - 1])
            await _renumber_routes(db, ids[:position - 1] + ids[position:])

        return await self._change_routes("route_remove", project_id, body)

    async def move_route(self, project_id: int, position: int, to: int) -> Project:
        async def body(db: Conn) -> None:
            ids = await _route_ids(db, project_id)
            if not (1 <= position <= len(ids) and 1 <= to <= len(ids)):
                raise NotFound(f"no rule {position if not 1 <= position <= len(ids) else to}"
                               f" (the project has {len(ids)})")
            ids.insert(to - 1, ids.pop(position - 1))
            await _renumber_routes(db, ids)

        return await self._change_routes("route_move", project_id, body)

    async def quota_used(self, card_id: int, month: str) -> int:
        return int(await self._fetchval("SELECT used_s FROM card_quota WHERE card_id = ? AND month = ?",
                                        card_id, month) or 0)

    async def access_number_owner(self, number: str) -> str | None:
        name = await self._fetchval("SELECT p.name FROM access_numbers a JOIN projects p ON p.id = a.project_id"
                                    " WHERE a.number = ?", number)
        return None if name is None else str(name)

    async def project_currencies(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for currency, name in await self._fetch("SELECT currency, name FROM projects ORDER BY id"):
            out.setdefault(currency, []).append(name)
        return out

    # --- the operator's account ---------------------------------------------
    async def account_settings(self) -> AccountSettings:
        rows = await self._fetch("SELECT currency, info_limit_cents, lock_limit_cents, suspend_calls"
                                 " FROM account WHERE id = 1")
        if not rows:  # pragma: no cover - migration 2 inserts the row
            raise StoreUnavailable("the account row is missing")
        r = rows[0]
        return AccountSettings(currency=r[0], info_limit_cents=r[1], lock_limit_cents=r[2],
                               suspend_calls=bool(r[3]))

    async def update_account_settings(self, changes: Mapping[str, Any]) -> AccountSettings:
        unknown = set(changes) - _ACCOUNT_UPDATABLE
        if unknown:
            raise InvalidInput(f"account settings cannot change: {', '.join(sorted(unknown))}")
        if changes:
            values = [int(v) if isinstance(v, bool) else v for v in changes.values()]
            assignments = ", ".join(f"{column} = ?" for column in changes)
            await self._transaction("account_settings", lambda db: db.execute(
                _q(f"UPDATE account SET {assignments} WHERE id = 1"), *values))
        return await self.account_settings()

    async def claim_account_currency(self, currency: str) -> str:
        await self._transaction("account_currency", lambda db: db.execute(
            _q("UPDATE account SET currency = ? WHERE id = 1 AND currency IS NULL"), currency))
        return (await self.account_settings()).currency or currency

    async def account_owed_cents(self, *, before_ms: int | None = None) -> int:
        until = " AND l.at_ms < ?" if before_ms is not None else ""
        paid_until = " WHERE at_ms < ?" if before_ms is not None else ""
        args = (before_ms,) if before_ms is not None else ()
        charged = await self._fetchval("SELECT COALESCE(SUM(l.amount_cents), 0) FROM ledger l"
                                       f" WHERE l.kind IN ('purchase', 'recharge'){until}", *args)
        paid = await self._fetchval(f"SELECT COALESCE(SUM(amount_cents), 0) FROM payments{paid_until}", *args)
        return int(charged) - int(paid)

    async def account_lines(self, *, since_ms: int | None = None, until_ms: int | None = None) -> list[AccountLine]:
        window = ""
        args: list[Any] = []
        if since_ms is not None:
            window += " AND at_ms >= ?"
            args.append(since_ms)
        if until_ms is not None:
            window += " AND at_ms < ?"
            args.append(until_ms)
        rows = await self._fetch(
            "SELECT at_ms, kind, amount_cents, card_id, project_id, seconds, reference, entered_by FROM ("
            " SELECT l.at_ms AS at_ms, l.kind AS kind, l.amount_cents AS amount_cents, l.card_id AS card_id,"
            "  c.project_id AS project_id, l.seconds AS seconds, l.reference AS reference, '' AS entered_by,"
            "  0 AS source, l.id AS id"
            "  FROM ledger l JOIN cards c ON c.id = l.card_id WHERE l.kind IN ('purchase', 'recharge')"
            " UNION ALL"
            " SELECT at_ms, 'payment', -amount_cents, NULL, NULL, 0, reference, entered_by, 1, id FROM payments"
            f") AS lines WHERE 1 = 1{window} ORDER BY at_ms, source, id", *args)
        return [AccountLine(*r) for r in rows]

    async def add_payment(self, *, amount_cents: int, currency: str, reference: str, entered_by: str,
                          now_ms: int) -> None:
        if amount_cents <= 0:
            raise InvalidInput("a payment must be a positive amount")
        await self._transaction("add_payment", lambda db: db.execute(_q(
            "INSERT INTO payments (at_ms, amount_cents, currency, reference, entered_by) VALUES (?,?,?,?,?)"),
            now_ms, amount_cents, currency, reference, entered_by))

    # --- ivr db copy ----------------------------------------------------------
    async def tables(self) -> list[str]:
        """The ivr tables in creation order (their references allow it)."""
        rows = await self._fetch("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                 " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                                 " AND c.relname NOT IN ('ivr_schema', 'ivr_config') ORDER BY c.oid")
        return [r[0] for r in rows]

    async def table_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if table not in await self.tables():
            raise NotFound(f"no table {table}")
        columns = [r[0] for r in await self._fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position", table)]
        rows = await self._fetch(f'SELECT * FROM "{table}"')
        return columns, [tuple(r) for r in rows]

    async def load_tables(self, data: list[tuple[str, list[str], list[tuple[Any, ...]]]]) -> None:
        """Replace the given tables' rows in one transaction; identity counters follow."""
        async def body(db: Conn) -> None:
            for table, _, _ in reversed(data):
                await db.execute(f'DELETE FROM "{table}"')
            for table, columns, rows in data:
                if rows:
                    await db.copy_records_to_table(table, records=rows, columns=columns)
                if "id" in columns:
                    await db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                                     f' GREATEST((SELECT MAX(id) FROM "{table}"), 1))')

        await self._transaction("copy", body)

    async def card_balances(self) -> dict[int, tuple[int, int]]:
        rows = await self._fetch("SELECT c.id, c.balance_s, COALESCE(SUM(l.seconds), 0) FROM cards c"
                                 " LEFT JOIN ledger l ON l.card_id = c.id GROUP BY c.id")
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


if TYPE_CHECKING:  # mypy proves PostgresStore keeps both contracts
    from .base import OperatorStore

    _keeps_contract: OperatorStore = PostgresStore("postgresql://")
