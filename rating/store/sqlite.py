"""The embedded store: one aiosqlite connection, one writer at a time.

aiosqlite runs the connection on one thread and a transaction belongs to it, so
every write goes through ``_write()``: an asyncio lock, ``BEGIN IMMEDIATE`` (takes
SQLite's write lock at once, so another process — the operator CLI — waits in
``busy_timeout`` instead of failing halfway), commit or roll back. Transactions
are short and never span a prompt or a Dial.

No overdraft: a reservation is one conditional UPDATE (``balance_s - reserved_s``
must cover it), the schema's CHECKs forbid a negative balance as a backstop, and
settling debits at most what was reserved.

Thread hops: aiosqlite runs each call on its worker thread and wakes the event
loop for the answer, about 85 µs of CPU per round trip on a 2-core machine — more
than the SQL itself. So a read is one hop (``execute_fetchall``, not execute +
fetchall + close), and the writes of every call (reserve, settle, CDR, bind,
activation, PIN failure) run their whole transaction — ``BEGIN IMMEDIATE``, the
statements, ``COMMIT`` or ``ROLLBACK`` — as one function on that thread
(``_transaction``): one hop instead of one per statement (``bench/`` measures it).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import aiosqlite

from ..billing import BillingRule
from ..errors import (
    AlreadyExists,
    CardBlocked,
    CardExpired,
    CardInUse,
    CardUnusable,
    InsufficientBalance,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)
from ..models import (
    AccountLine,
    AccountSettings,
    Binding,
    BlockedNumber,
    BoundReservation,
    Card,
    Cdr,
    Grant,
    LedgerEntry,
    Project,
    Routing,
)
from ._schema import MIGRATIONS

__all__ = ["SqliteStore", "StoreObserver"]

T = TypeVar("T")

StoreObserver = Callable[[str, float], None]  # (operation, seconds)

_CARD_COLS = ("id, project_id, note, blocked, balance_s, reserved_s, active_calls, price_cents, "
              "created_ms, activated_ms, expires_ms")
# An open reservation older than this (past its call's longest possible end) is
# released by the next reservation on the card: it belongs to a crashed engine.
RESERVATION_GRACE_MS = 300_000
PIN_FAILURE_RETENTION_MS = 7 * 86_400_000
# Project columns ``update_project`` may change (the name and id never change).
_PROJECT_UPDATABLE = frozenset({
    "service", "fallback", "ring_timeout_s", "language", "region", "price_per_minute_cents", "currency",
    "connect_s", "minimum_s", "initial_s", "increment_s", "warning_s", "pin_length", "max_bound_numbers",
    "max_simultaneous_calls", "card_validity_days"})
_ACCOUNT_UPDATABLE = frozenset({"currency", "info_limit_cents", "lock_limit_cents", "suspend_calls"})
_BLOCKED_COLS = "id, project_id, pattern, direction, reason, created_ms, added_by"
_CDR_COLS = ("uniqueid, project_id, card_id, caller_raw, caller_e164, dialled, destination, start_ms,"
             " answer_ms, end_ms, talk_s, debited_s, outcome, hangup_side")


def _card(row: Sequence[Any]) -> Card:
    return Card(id=row[0], project_id=row[1], note=row[2], blocked=bool(row[3]), balance_s=row[4],
                reserved_s=row[5], active_calls=row[6], price_cents=row[7], created_ms=row[8],
                activated_ms=row[9], expires_ms=row[10])


def _run_transaction(db: aiosqlite.Connection, operation: str, body: Callable[[sqlite3.Connection], T]) -> T:
    """On aiosqlite's worker thread: ``BEGIN IMMEDIATE``, ``body``, ``COMMIT``, or
    ``ROLLBACK`` if anything failed — the same steps as ``SqliteStore._write``."""
    conn = db._conn  # the sqlite3 connection, used on the thread that owns it
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"{operation}: {exc}") from exc
    committed = False
    try:
        result = body(conn)
        try:
            conn.execute("COMMIT")
            committed = True
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{operation}: {exc}") from exc
    finally:
        if not committed:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # nothing was left open
    return result


_PROJECT_COLS = ("id, name, service, fallback, ring_timeout_s, language, region, price_per_minute_cents,"
                 " currency, connect_s, minimum_s, initial_s, increment_s, warning_s, pin_length,"
                 " max_bound_numbers, max_simultaneous_calls, card_validity_days")
# Writes of the call path: they never change projects, numbers or blocks, so they leave
# the routing snapshot valid.
_ROUTING_NEUTRAL = frozenset({"reserve", "settle", "write_cdr", "settle_and_record", "bind", "activate",
                              "pin_failure", "create_card", "recharge", "adjust", "set_pin", "set_blocked",
                              "set_expiry", "unbind", "add_payment", "account_currency", "account_settings"})


def _reserve(db: sqlite3.Connection, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int,
             hold_s: int, now_ms: int) -> Grant:
    """On the worker thread, inside a transaction: see ``SqliteStore.reserve``."""
    # Holds of crashed engines expire, so a card is never locked forever.
    stale = db.execute(
        "SELECT id, seconds FROM reservations WHERE card_id = ? AND state = 'open'"
        " AND expires_ms < ?", (card_id, now_ms)).fetchall()
    for res_id, seconds in stale:
        db.execute("UPDATE reservations SET state = 'released' WHERE id = ?", (res_id,))
        db.execute("UPDATE cards SET reserved_s = reserved_s - ?,"
                   " active_calls = MAX(active_calls - 1, 0) WHERE id = ?", (seconds, card_id))
    row = db.execute(f"SELECT {_CARD_COLS} FROM cards WHERE id = ?", (card_id,)).fetchone()
    if row is None:
        raise NotFound(f"no card {card_id}")
    card = _card(row)
    if card.blocked:
        raise CardBlocked(f"card {card_id} is blocked")
    if card.expires_ms is not None and now_ms >= card.expires_ms:
        raise CardExpired(f"card {card_id} has expired")
    if card.active_calls >= max_calls:
        raise CardInUse(f"card {card_id} is in {card.active_calls} call(s)")
    share = card.available_s // (max_calls - card.active_calls)
    max_talk = rule.max_talk(share)
    if max_talk <= 0:
        raise InsufficientBalance(f"card {card_id} has {card.available_s} s left")
    seconds = rule.debit(max_talk)
    # The conditional UPDATE is the guard; the checks above only pick the error.
    cur = db.execute(
        "UPDATE cards SET reserved_s = reserved_s + ?, active_calls = active_calls + 1"
        " WHERE id = ? AND balance_s - reserved_s >= ? AND active_calls < ?",
        (seconds, card_id, seconds, max_calls))
    if cur.rowcount != 1:  # pragma: no cover - the write lock makes this unreachable
        raise InsufficientBalance(f"card {card_id} changed under the reservation")
    cur = db.execute(
        "INSERT INTO reservations (card_id, uniqueid, seconds, created_ms, expires_ms)"
        " VALUES (?, ?, ?, ?, ?)",
        (card_id, uniqueid, seconds, now_ms, now_ms + (max_talk + hold_s) * 1000 + RESERVATION_GRACE_MS))
    return Grant(reservation_id=cur.lastrowid or 0, card_id=card_id, reserved_s=seconds,
                 max_talk_s=max_talk, available_before_s=card.available_s)


def _settle(db: sqlite3.Connection, grant: Grant, *, debit_s: int, uniqueid: str, now_ms: int) -> int:
    """On the worker thread, inside a transaction: see ``SqliteStore.settle``."""
    debit_s = max(0, min(debit_s, grant.reserved_s))
    cur = db.execute("UPDATE reservations SET state = 'settled' WHERE id = ? AND state = 'open'",
                     (grant.reservation_id,))
    if cur.rowcount != 1:
        return 0
    db.execute("UPDATE cards SET balance_s = balance_s - ?, reserved_s = reserved_s - ?,"
               " active_calls = active_calls - 1 WHERE id = ?", (debit_s, grant.reserved_s, grant.card_id))
    if debit_s:
        db.execute("INSERT INTO ledger (card_id, at_ms, kind, seconds, reference) VALUES (?, ?, 'debit', ?, ?)",
                   (grant.card_id, now_ms, -debit_s, uniqueid))
    return debit_s


def _insert_cdr(db: sqlite3.Connection, cdr: Cdr) -> None:
    db.execute(
        "INSERT INTO cdrs (uniqueid, project_id, card_id, caller_raw, caller_e164, dialled, destination,"
        " start_ms, answer_ms, end_ms, talk_s, debited_s, outcome, hangup_side)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (cdr.uniqueid, cdr.project_id, cdr.card_id, cdr.caller_raw, cdr.caller_e164, cdr.dialled,
         cdr.destination, cdr.start_ms, cdr.answer_ms, cdr.end_ms, cdr.talk_s, cdr.debited_s,
         cdr.outcome, cdr.hangup_side))


def _project(r: Sequence[Any], numbers: tuple[str, ...]) -> Project:
    return Project(id=r[0], name=r[1], numbers=numbers, service=r[2], fallback=r[3], ring_timeout_s=r[4],
                   language=r[5], region=r[6], price_per_minute_cents=r[7], currency=r[8],
                   rule=BillingRule(connect_s=r[9], minimum_s=r[10], initial_s=r[11], increment_s=r[12]),
                   warning_s=r[13], pin_length=r[14], max_bound_numbers=r[15],
                   max_simultaneous_calls=r[16], card_validity_days=r[17])


def _is_file(path: str) -> bool:
    return Path(path).is_file()  # a stat, not worth a thread hop


class SqliteStore:
    def __init__(self, path: str | Path, *, observer: StoreObserver | None = None) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._config_generation = 0
        self._routing: Routing | None = None
        self._routing_key: tuple[int, int] = (-1, -1)
        self._routing_checked = float("-inf")
        self._observer = observer

    # --- lifecycle ---------------------------------------------------------
    async def open(self, *, create: bool = True) -> None:
        """Open (and migrate) the database. ``create=False``: a file that does not exist
        is StoreUnavailable and nothing is created (read commands, ``ivr call``).

        Raises StoreUnavailable; a failed open closes the connection again, so aiosqlite's
        worker thread (not a daemon) does not keep the process alive."""
        try:
            if self.path != ":memory:":
                if not create and not _is_file(self.path):
                    raise StoreUnavailable(f"database {self.path} does not exist (`ivr project create`"
                                           " starts a new one)")
                if create:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._migrate()
        except (sqlite3.Error, OSError, StoreUnavailable) as exc:
            await self._close_quietly()
            if isinstance(exc, StoreUnavailable):
                raise
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StoreUnavailable(f"cannot open database {self.path}: {reason}") from exc

    async def _close_quietly(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                await db.close()
            except (sqlite3.Error, ValueError):
                pass  # the open failed; closing is only to end aiosqlite's thread

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _migrate(self) -> None:
        db = self._conn
        async with self._write("migrate"):
            row = await (await db.execute("PRAGMA user_version")).fetchone()
            version = row[0] if row else 0
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        await db.execute(statement)
                await db.execute(f"PRAGMA user_version={number}")

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable("store is not open")
        return self._db

    @asynccontextmanager
    async def _write(self, operation: str) -> AsyncIterator[aiosqlite.Connection]:
        db = self._conn
        started = time.perf_counter()
        self._note_write(operation)
        async with self._lock, self._noting_write(operation):
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{operation}: {exc}") from exc
            committed = False
            try:
                yield db
                try:
                    await db.execute("COMMIT")
                    committed = True
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"{operation}: {exc}") from exc
            finally:
                if not committed:
                    try:
                        await db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # nothing was left open
        if self._observer is not None:
            self._observer(operation, time.perf_counter() - started)

    def _note_write(self, operation: str) -> None:
        if operation not in _ROUTING_NEUTRAL:
            self._config_generation += 1

    @asynccontextmanager
    async def _noting_write(self, operation: str) -> AsyncIterator[None]:
        """Mark the routing snapshot stale once more when the write ends (committed or
        rolled back): a snapshot read while it was open may hold its uncommitted rows."""
        try:
            yield
        finally:
            self._note_write(operation)

    async def _transaction(self, operation: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """``_write`` in one thread hop: ``body(conn)`` runs inside ``BEGIN IMMEDIATE`` …
        ``COMMIT`` on aiosqlite's worker thread, under the same lock, with the same errors
        (a failing BEGIN or COMMIT is StoreUnavailable; anything ``body`` raises rolls back
        and propagates) and the same observer call on success.

        ``aiosqlite.Connection._execute`` (queue a function for the worker thread) is how
        aiosqlite's own cursors reach that thread; no public call runs a function there."""
        db = self._conn
        started = time.perf_counter()
        self._note_write(operation)
        async with self._lock, self._noting_write(operation):
            result: T = await db._execute(  # type: ignore[no-untyped-call]  # aiosqlite leaves it untyped
                _run_transaction, db, operation, body)
        if self._observer is not None:
            self._observer(operation, time.perf_counter() - started)
        return result

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    # --- projects ----------------------------------------------------------
    async def create_project(self, *, name: str, numbers: Sequence[str], service: str,
                             fallback: str | None, ring_timeout_s: int, language: str, region: str,
                             price_per_minute_cents: int, currency: str, rule: BillingRule,
                             warning_s: int, pin_length: int, max_bound_numbers: int,
                             max_simultaneous_calls: int, card_validity_days: int | None,
                             now_ms: int) -> Project:
        try:
            async with self._write("create_project") as db:
                cur = await db.execute(
                    "INSERT INTO projects (name, service, fallback, ring_timeout_s, language, region,"
                    " price_per_minute_cents, currency, connect_s, minimum_s, initial_s, increment_s,"
                    " warning_s, pin_length, max_bound_numbers, max_simultaneous_calls,"
                    " card_validity_days, created_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (name, service, fallback, ring_timeout_s, language, region, price_per_minute_cents,
                     currency, rule.connect_s, rule.minimum_s, rule.initial_s, rule.increment_s,
                     warning_s, pin_length, max_bound_numbers, max_simultaneous_calls,
                     card_validity_days, now_ms))
                project_id = cur.lastrowid
                for number in numbers:
                    await db.execute("INSERT INTO access_numbers (number, project_id) VALUES (?, ?)",
                                     (number, project_id))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"project name or access number already in use ({exc})") from exc
        project = await self.project_by_name(name)
        assert project is not None
        return project

    async def _project(self, where: str, params: Sequence[Any]) -> Project | None:
        sql = f"SELECT {_PROJECT_COLS} FROM projects WHERE {where}"

        db = self._conn

        def both() -> tuple[list[Any], list[Any]]:  # on the worker thread: one hop, not two
            conn = db._conn
            rows = conn.execute(sql, params).fetchall()
            if not rows:
                return rows, []
            return rows, conn.execute("SELECT number FROM access_numbers WHERE project_id = ? ORDER BY number",
                                      (rows[0][0],)).fetchall()

        try:
            rows, numbers = await db._execute(both)  # type: ignore[no-untyped-call]  # untyped in aiosqlite
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        if not rows:
            return None
        return _project(rows[0], tuple(n[0] for n in numbers))

    async def project_by_name(self, name: str) -> Project | None:
        return await self._project("name = ?", (name,))

    async def project_by_id(self, project_id: int) -> Project | None:
        return await self._project("id = ?", (project_id,))

    async def routing(self, *, max_age_s: float = 0.0) -> Routing:
        """Projects by access number and every blocked number, as one snapshot for the
        call path. Rebuilt only when the configuration changed: by this connection
        (a non-call write, seen at once) or by another one (``PRAGMA data_version``, e.g.
        the operator CLI); otherwise one cheap thread hop per call instead of three
        queries. With ``max_age_s`` a snapshot younger than that is trusted without the
        hop: another process's change then shows within ``max_age_s``."""
        db = self._conn
        cached_key, generation = self._routing_key, self._config_generation
        if (self._routing is not None and generation == cached_key[1]
                and time.monotonic() - self._routing_checked < max_age_s):
            return self._routing

        def load() -> tuple[int, list[Any], list[Any], list[Any]] | tuple[int]:
            conn = db._conn
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if (version, generation) == cached_key:
                return (version,)
            projects = conn.execute(f"SELECT {_PROJECT_COLS} FROM projects").fetchall()
            numbers = conn.execute("SELECT number, project_id FROM access_numbers ORDER BY number").fetchall()
            blocked = conn.execute(f"SELECT {_BLOCKED_COLS} FROM blacklist ORDER BY id").fetchall()
            return version, projects, numbers, blocked

        try:
            async with self._lock:  # never between the statements of an open write
                loaded = await db._execute(load)  # type: ignore[no-untyped-call]  # untyped in aiosqlite
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._routing_checked = time.monotonic()
        if len(loaded) == 1 and self._routing is not None:
            return self._routing
        if len(loaded) == 1:  # pragma: no cover - a key match implies a snapshot
            self._routing_key = (-1, -1)
            return await self.routing()
        version, project_rows, number_rows, blocked_rows = loaded
        numbers_of: dict[int, list[str]] = {}
        for number, project_id in number_rows:
            numbers_of.setdefault(project_id, []).append(number)
        projects = {r[0]: _project(r, tuple(numbers_of.get(r[0], ()))) for r in project_rows}
        self._routing = Routing(
            by_number={n: projects[pid] for pid, ns in numbers_of.items() for n in ns},
            regions=tuple(sorted({p.region for p in projects.values()})),
            blocked=tuple(BlockedNumber(*r) for r in blocked_rows))
        self._routing_key = (version, generation)
        return self._routing

    async def projects(self) -> list[Project]:
        rows = await self._read("SELECT name FROM projects ORDER BY name")
        out = [await self.project_by_name(r[0]) for r in rows]
        return [p for p in out if p is not None]

    # --- cards -------------------------------------------------------------
    async def create_card(self, *, project_id: int, note: str, pin_hash: str, seconds: int,
                          price_cents: int, now_ms: int, expires_ms: int | None) -> Card:
        """Raises AlreadyExists when the PIN hash is taken in the project (caller retries)."""
        if seconds <= 0:
            raise InvalidInput("a card needs a positive number of seconds")
        try:
            async with self._write("create_card") as db:
                cur = await db.execute(
                    "INSERT INTO cards (project_id, note, pin_hash, balance_s, price_cents, created_ms,"
                    " expires_ms) VALUES (?,?,?,?,?,?,?)",
                    (project_id, note, pin_hash, seconds, price_cents, now_ms, expires_ms))
                card_id = cur.lastrowid
                await db.execute(
                    "INSERT INTO ledger (card_id, at_ms, kind, seconds, amount_cents, reference)"
                    " VALUES (?, ?, 'purchase', ?, ?, '')", (card_id, now_ms, seconds, price_cents))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("PIN already used in this project") from exc
        card = await self.card(card_id)  # type: ignore[arg-type]
        return card

    async def card(self, card_id: int) -> Card:
        rows = await self._read(f"SELECT {_CARD_COLS} FROM cards WHERE id = ?", (card_id,))
        if not rows:
            raise NotFound(f"no card {card_id}")
        return _card(rows[0])

    async def card_by_pin_hash(self, project_id: int, pin_hash: str) -> Card | None:
        rows = await self._read(f"SELECT {_CARD_COLS} FROM cards WHERE project_id = ? AND pin_hash = ?",
                                (project_id, pin_hash))
        return _card(rows[0]) if rows else None

    async def card_for_caller(self, project_id: int, caller: str) -> Card | None:
        rows = await self._read(
            f"SELECT {_CARD_COLS} FROM cards WHERE id ="
            " (SELECT card_id FROM bindings WHERE project_id = ? AND caller = ?)", (project_id, caller))
        return _card(rows[0]) if rows else None

    async def cards(self, project_id: int | None = None) -> list[Card]:
        if project_id is None:
            rows = await self._read(f"SELECT {_CARD_COLS} FROM cards ORDER BY id")
        else:
            rows = await self._read(f"SELECT {_CARD_COLS} FROM cards WHERE project_id = ? ORDER BY id",
                                    (project_id,))
        return [_card(r) for r in rows]

    async def set_pin_hash(self, card_id: int, pin_hash: str) -> None:
        try:
            async with self._write("set_pin") as db:
                cur = await db.execute("UPDATE cards SET pin_hash = ? WHERE id = ?", (pin_hash, card_id))
                if cur.rowcount == 0:
                    raise NotFound(f"no card {card_id}")
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("PIN already used in this project") from exc

    async def set_blocked(self, card_id: int, blocked: bool) -> None:
        async with self._write("set_blocked") as db:
            cur = await db.execute("UPDATE cards SET blocked = ? WHERE id = ?", (int(blocked), card_id))
            if cur.rowcount == 0:
                raise NotFound(f"no card {card_id}")

    async def recharge(self, card_id: int, seconds: int, price_cents: int, now_ms: int) -> Card:
        if seconds <= 0:
            raise InvalidInput("recharge needs a positive number of seconds")
        async with self._write("recharge") as db:
            cur = await db.execute("UPDATE cards SET balance_s = balance_s + ? WHERE id = ?",
                                   (seconds, card_id))
            if cur.rowcount == 0:
                raise NotFound(f"no card {card_id}")
            await db.execute("INSERT INTO ledger (card_id, at_ms, kind, seconds, amount_cents)"
                             " VALUES (?, ?, 'recharge', ?, ?)", (card_id, now_ms, seconds, price_cents))
        return await self.card(card_id)

    async def adjust(self, card_id: int, seconds: int, reason: str, now_ms: int) -> Card:
        """Correct a card's balance by ``seconds`` (signed), as a ledger row of its own.

        Raises:
            NotFound; InsufficientBalance when it would take time that is not free.
        """
        async with self._write("adjust") as db:
            cur = await db.execute(
                "UPDATE cards SET balance_s = balance_s + ? WHERE id = ? AND balance_s - reserved_s + ? >= 0",
                (seconds, card_id, seconds))
            if cur.rowcount == 0:
                await self.card(card_id)  # NotFound if there is no such card
                raise InsufficientBalance(f"card {card_id} has not {-seconds} s free to take")
            await db.execute("INSERT INTO ledger (card_id, at_ms, kind, seconds, reference)"
                             " VALUES (?, ?, 'adjustment', ?, ?)", (card_id, now_ms, seconds, reason))
        return await self.card(card_id)

    async def activate(self, card_id: int, now_ms: int) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute("UPDATE cards SET activated_ms = ? WHERE id = ? AND activated_ms IS NULL",
                       (now_ms, card_id))

        await self._transaction("activate", body)

    # --- bindings ----------------------------------------------------------
    async def bind(self, *, project_id: int, caller: str, card_id: int, now_ms: int, source: str,
                   max_bound: int) -> None:
        """Bind ``caller`` to the card (moving it from any older card of the project); above
        ``max_bound`` numbers on the card the oldest binding goes. An operator binding
        counts as activation."""
        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO bindings (project_id, caller, card_id, bound_ms, source) VALUES (?,?,?,?,?)"
                " ON CONFLICT (project_id, caller) DO UPDATE SET card_id = excluded.card_id,"
                " bound_ms = excluded.bound_ms, source = excluded.source",
                (project_id, caller, card_id, now_ms, source))
            db.execute(
                "DELETE FROM bindings WHERE card_id = ? AND caller NOT IN (SELECT caller FROM bindings"
                " WHERE card_id = ? ORDER BY bound_ms DESC, rowid DESC LIMIT ?)", (card_id, card_id, max_bound))
            db.execute("UPDATE cards SET activated_ms = ? WHERE id = ? AND activated_ms IS NULL",
                       (now_ms, card_id))

        await self._transaction("bind", body)

    async def unbind(self, project_id: int, caller: str) -> None:
        async with self._write("unbind") as db:
            cur = await db.execute("DELETE FROM bindings WHERE project_id = ? AND caller = ?",
                                   (project_id, caller))
            if cur.rowcount == 0:
                raise NotFound(f"{caller} is not bound in this project")

    async def bindings(self, card_id: int) -> list[Binding]:
        rows = await self._read("SELECT caller, card_id, bound_ms, source FROM bindings WHERE card_id = ?"
                                " ORDER BY bound_ms, rowid", (card_id,))
        return [Binding(*r) for r in rows]

    # --- reserve and settle -----------------------------------------------
    async def reserve(self, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int,
                      hold_s: int, now_ms: int) -> Grant:
        """Hold card time for one call, atomically.

        The free time (balance minus other calls' holds) is shared among the call
        slots still free, so a second simultaneous call cannot spend the first's.
        ``hold_s`` is how long the hold may live beyond its talk time (ring, prompts).

        Raises:
            NotFound, CardBlocked, CardExpired, CardInUse, InsufficientBalance.
        """
        return await self._transaction("reserve", lambda db: _reserve(
            db, card_id=card_id, uniqueid=uniqueid, rule=rule, max_calls=max_calls, hold_s=hold_s, now_ms=now_ms))

    async def reserve_bound(self, *, project_id: int, caller: str, uniqueid: str, rule: BillingRule,
                            max_calls: int, hold_s: int, now_ms: int) -> BoundReservation | None:
        """The card bound to ``caller`` in the project, and a hold on it, in one transaction
        (one thread hop for a bound caller instead of two). ``None`` when the line is not
        bound; a refusal (``CardUnusable``) is returned, not raised, with the card."""
        def body(db: sqlite3.Connection) -> BoundReservation | None:
            row = db.execute(f"SELECT {_CARD_COLS} FROM cards WHERE id ="
                             " (SELECT card_id FROM bindings WHERE project_id = ? AND caller = ?)",
                             (project_id, caller)).fetchone()
            if row is None:
                return None
            card = _card(row)
            try:
                grant = _reserve(db, card_id=card.id, uniqueid=uniqueid, rule=rule, max_calls=max_calls,
                                 hold_s=hold_s, now_ms=now_ms)
            except CardUnusable as refusal:
                return BoundReservation(card=card, grant=None, refusal=refusal)
            return BoundReservation(card=card, grant=grant, refusal=None)

        return await self._transaction("reserve", body)

    async def settle(self, grant: Grant, *, debit_s: int, uniqueid: str, now_ms: int) -> int:
        """Debit the real cost (capped at the hold) and release the rest. Idempotent:
        a reservation already settled or released debits nothing. Returns seconds debited."""
        return await self._transaction(
            "settle", lambda db: _settle(db, grant, debit_s=debit_s, uniqueid=uniqueid, now_ms=now_ms))

    async def settle_and_record(self, grant: Grant, *, debit_s: int, cdr: Cdr, now_ms: int) -> int:
        """``settle`` and ``write_cdr`` in one transaction (one commit per call instead of
        two); the CDR gets the seconds really debited. Returns them."""
        def body(db: sqlite3.Connection) -> int:
            cdr.debited_s = _settle(db, grant, debit_s=debit_s, uniqueid=cdr.uniqueid, now_ms=now_ms)
            _insert_cdr(db, cdr)
            return cdr.debited_s

        return await self._transaction("settle_and_record", body)

    # --- ledger, CDRs ------------------------------------------------------
    async def ledger(self, card_id: int) -> list[LedgerEntry]:
        rows = await self._read("SELECT id, card_id, at_ms, kind, seconds, amount_cents, reference"
                                " FROM ledger WHERE card_id = ? ORDER BY id", (card_id,))
        return [LedgerEntry(*r) for r in rows]

    async def write_cdr(self, cdr: Cdr) -> None:
        await self._transaction("write_cdr", lambda db: _insert_cdr(db, cdr))

    async def cdrs(self, *, card_id: int | None = None, limit: int = 1000) -> list[Cdr]:
        where, params = ("WHERE card_id = ?", [card_id]) if card_id is not None else ("", [])
        rows = await self._read(
            "SELECT uniqueid, project_id, card_id, caller_raw, caller_e164, dialled, destination, start_ms,"
            f" answer_ms, end_ms, talk_s, debited_s, outcome, hangup_side FROM cdrs {where}"
            " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [Cdr(*r) for r in rows]

    # --- blacklist ---------------------------------------------------------
    async def blacklist_remove(self, *, project_id: int | None, pattern: str, direction: str) -> None:
        async with self._write("blacklist_remove") as db:
            cur = await db.execute("DELETE FROM blacklist WHERE IFNULL(project_id, 0) = ? AND pattern = ?"
                                   " AND direction = ?", (project_id or 0, pattern, direction))
            if cur.rowcount == 0:
                raise NotFound(f"{pattern} is not blocked there")

    # --- PIN brute-force throttle -----------------------------------------
    async def record_pin_failure(self, project_id: int, caller_key: str, now_ms: int) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO pin_failures (project_id, caller_key, at_ms) VALUES (?,?,?)",
                       (project_id, caller_key, now_ms))
            # Only recent failures count; keep the table small (any window up to a week).
            db.execute("DELETE FROM pin_failures WHERE project_id = ? AND at_ms < ?",
                       (project_id, now_ms - PIN_FAILURE_RETENTION_MS))

        await self._transaction("pin_failure", body)

    async def pin_failures_since(self, project_id: int, caller_key: str, since_ms: int) -> tuple[int, int]:
        """Wrong PINs since ``since_ms``: (from this caller, in the whole project)."""
        rows = await self._read(
            "SELECT IFNULL(SUM(caller_key = ?), 0), COUNT(*) FROM pin_failures WHERE project_id = ? AND at_ms >= ?",
            (caller_key, project_id, since_ms))
        return int(rows[0][0]), int(rows[0][1])

    # --- operator's CLI: projects -----------------------------------------
    async def update_project(self, project_id: int, *, changes: Mapping[str, Any],
                             add_numbers: Sequence[str] = (), remove_numbers: Sequence[str] = ()) -> Project:
        """Change only the given columns and access numbers, in one transaction.

        Raises:
            NotFound: no such project, or a number to remove is not one of its access numbers.
            AlreadyExists: a number to add belongs to a project already.
            InvalidInput: an unknown column, or no access number would be left.
        """
        unknown = set(changes) - _PROJECT_UPDATABLE
        if unknown:
            raise InvalidInput(f"project settings cannot change: {', '.join(sorted(unknown))}")
        async with self._write("update_project") as db:
            if not await (await db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,))).fetchone():
                raise NotFound(f"no project with id {project_id}")
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                await db.execute(f"UPDATE projects SET {assignments} WHERE id = ?",
                                 (*changes.values(), project_id))
            for number in remove_numbers:
                cur = await db.execute("DELETE FROM access_numbers WHERE number = ? AND project_id = ?",
                                       (number, project_id))
                if cur.rowcount == 0:
                    raise NotFound(f"{number} is not an access number of this project")
            for number in add_numbers:
                owner = await (await db.execute(
                    "SELECT p.name FROM access_numbers a JOIN projects p ON p.id = a.project_id"
                    " WHERE a.number = ?", (number,))).fetchone()
                if owner is not None:
                    raise AlreadyExists(f"{number} is already an access number of project {owner[0]}")
                await db.execute("INSERT INTO access_numbers (number, project_id) VALUES (?, ?)",
                                 (number, project_id))
            left = await (await db.execute("SELECT COUNT(*) FROM access_numbers WHERE project_id = ?",
                                           (project_id,))).fetchone()
            if not left or left[0] == 0:
                raise InvalidInput("a project needs at least one access number")
        project = await self.project_by_id(project_id)
        assert project is not None
        return project

    async def access_number_owner(self, number: str) -> str | None:
        """The name of the project whose access number this is, if any."""
        rows = await self._read("SELECT p.name FROM access_numbers a JOIN projects p ON p.id = a.project_id"
                                " WHERE a.number = ?", (number,))
        return str(rows[0][0]) if rows else None

    # --- operator's CLI: cards --------------------------------------------
    async def set_expiry(self, card_id: int, expires_ms: int | None) -> Card:
        """Set (or, with None, remove) the moment the card expires. Raises NotFound."""
        async with self._write("set_expiry") as db:
            cur = await db.execute("UPDATE cards SET expires_ms = ? WHERE id = ?", (expires_ms, card_id))
            if cur.rowcount == 0:
                raise NotFound(f"no card {card_id}")
        return await self.card(card_id)

    # --- operator's CLI: blocked numbers ----------------------------------
    async def add_blocked(self, *, project_id: int | None, pattern: str, direction: str, reason: str,
                          added_by: str, now_ms: int) -> BlockedNumber:
        """Block ``pattern`` (checked by the caller), recording who added it. Raises AlreadyExists."""
        try:
            async with self._write("blacklist_add") as db:
                cur = await db.execute(
                    "INSERT INTO blacklist (project_id, pattern, direction, reason, created_ms, added_by)"
                    " VALUES (?,?,?,?,?,?)", (project_id, pattern, direction, reason, now_ms, added_by))
                entry_id = cur.lastrowid or 0
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"{pattern} ({direction}) is already blocked there") from exc
        return BlockedNumber(entry_id, project_id, pattern, direction, reason, now_ms, added_by)

    async def blocked(self, *, project_id: int | None = None, include_global: bool = True,
                      only_global: bool = False, direction: str | None = None) -> list[BlockedNumber]:
        """Entries with who added them: every entry by default; a project's own (and the
        global ones unless ``include_global=False``); or only the global ones."""
        clauses: list[str] = []
        params: list[Any] = []
        if only_global:
            clauses.append("project_id IS NULL")
        elif project_id is not None:
            clauses.append("(project_id = ?" + (" OR project_id IS NULL)" if include_global else ")"))
            params.append(project_id)
        if direction is not None:
            clauses.append("direction = ?")
            params.append(direction)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self._read(f"SELECT {_BLOCKED_COLS} FROM blacklist {where}"
                                " ORDER BY project_id IS NOT NULL, project_id, direction, pattern", params)
        return [BlockedNumber(*r) for r in rows]

    async def import_blocked(self, *, project_id: int | None, entries: Sequence[tuple[str, str, str, str]],
                             replace: bool, now_ms: int) -> tuple[int, int, int]:
        """Add ``(pattern, direction, reason, added_by)`` entries to one scope (a project, or
        global for None) in one transaction; with ``replace`` the scope's old entries go first.
        Entries already there are kept as they are. Returns (added, already there, removed)."""
        added = removed = 0
        async with self._write("blacklist_import") as db:
            if replace:
                cur = await db.execute("DELETE FROM blacklist WHERE IFNULL(project_id, 0) = ?",
                                       (project_id or 0,))
                removed = cur.rowcount
            for pattern, direction, reason, added_by in entries:
                cur = await db.execute(
                    "INSERT INTO blacklist (project_id, pattern, direction, reason, created_ms, added_by)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (project_id, pattern, direction, reason, now_ms, added_by))
                added += cur.rowcount
        return added, len(entries) - added, removed

    # --- operator's CLI: CDR queries --------------------------------------
    async def find_cdrs(self, *, since_ms: int | None = None, until_ms: int | None = None,
                        project_id: int | None = None, card_id: int | None = None,
                        outcomes: Sequence[str] = (), last: int | None = None) -> list[Cdr]:
        """CDRs in start order, filtered; with ``last`` only the latest that many."""
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (("start_ms >= ?", since_ms), ("start_ms < ?", until_ms),
                              ("project_id = ?", project_id), ("card_id = ?", card_id)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if outcomes:
            clauses.append(f"outcome IN ({', '.join('?' for _ in outcomes)})")
            params.extend(outcomes)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        limit = ""
        if last is not None:
            limit = " LIMIT ?"
            params.append(last)
        rows = await self._read(f"SELECT {_CDR_COLS} FROM cdrs {where} ORDER BY start_ms DESC, id DESC{limit}",
                                params)
        return [Cdr(*r) for r in reversed(rows)]

    # --- operator's CLI: the operator's account ---------------------------
    async def account_settings(self) -> AccountSettings:
        rows = await self._read("SELECT currency, info_limit_cents, lock_limit_cents, suspend_calls"
                                " FROM account WHERE id = 1")
        if not rows:  # pragma: no cover - migration 2 inserts the row
            raise StoreUnavailable("the account row is missing")
        r = rows[0]
        return AccountSettings(currency=r[0], info_limit_cents=r[1], lock_limit_cents=r[2],
                               suspend_calls=bool(r[3]))

    async def update_account_settings(self, changes: Mapping[str, Any]) -> AccountSettings:
        """Change only the given settings. Raises InvalidInput for an unknown one."""
        unknown = set(changes) - _ACCOUNT_UPDATABLE
        if unknown:
            raise InvalidInput(f"account settings cannot change: {', '.join(sorted(unknown))}")
        if changes:
            values = [int(v) if isinstance(v, bool) else v for v in changes.values()]
            async with self._write("account_settings") as db:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                await db.execute(f"UPDATE account SET {assignments} WHERE id = 1", values)
        return await self.account_settings()

    async def claim_account_currency(self, currency: str) -> str:
        """Fix the account's currency if it has none yet; returns the account's currency."""
        async with self._write("account_currency") as db:
            await db.execute("UPDATE account SET currency = ? WHERE id = 1 AND currency IS NULL", (currency,))
        return (await self.account_settings()).currency or currency

    async def account_owed_cents(self, *, before_ms: int | None = None) -> int:
        """Charges (card purchases and recharges) minus payments, optionally up to a moment."""
        until = " AND l.at_ms < ?" if before_ms is not None else ""
        paid_until = " WHERE at_ms < ?" if before_ms is not None else ""
        params = (before_ms,) if before_ms is not None else ()
        charged = await self._read("SELECT IFNULL(SUM(l.amount_cents), 0) FROM ledger l"
                                   f" WHERE l.kind IN ('purchase', 'recharge'){until}", params)
        paid = await self._read(f"SELECT IFNULL(SUM(amount_cents), 0) FROM payments{paid_until}", params)
        return int(charged[0][0]) - int(paid[0][0])

    async def account_lines(self, *, since_ms: int | None = None, until_ms: int | None = None) -> list[AccountLine]:
        """Charges and payments in time order, optionally within ``[since_ms, until_ms)``."""
        window = ""
        params: list[Any] = []
        if since_ms is not None:
            window += " AND at_ms >= ?"
            params.append(since_ms)
        if until_ms is not None:
            window += " AND at_ms < ?"
            params.append(until_ms)
        rows = await self._read(
            "SELECT at_ms, kind, amount_cents, card_id, project_id, seconds, reference, entered_by FROM ("
            " SELECT l.at_ms AS at_ms, l.kind AS kind, l.amount_cents AS amount_cents, l.card_id AS card_id,"
            "  c.project_id AS project_id, l.seconds AS seconds, l.reference AS reference, '' AS entered_by,"
            "  0 AS source, l.id AS id"
            "  FROM ledger l JOIN cards c ON c.id = l.card_id WHERE l.kind IN ('purchase', 'recharge')"
            " UNION ALL"
            " SELECT at_ms, 'payment', -amount_cents, NULL, NULL, 0, reference, entered_by, 1, id FROM payments"
            f") WHERE 1 = 1{window} ORDER BY at_ms, source, id", params)
        return [AccountLine(*r) for r in rows]

    async def add_payment(self, *, amount_cents: int, currency: str, reference: str, entered_by: str,
                          now_ms: int) -> None:
        if amount_cents <= 0:
            raise InvalidInput("a payment must be a positive amount")
        async with self._write("add_payment") as db:
            await db.execute("INSERT INTO payments (at_ms, amount_cents, currency, reference, entered_by)"
                             " VALUES (?,?,?,?,?)", (now_ms, amount_cents, currency, reference, entered_by))

    async def project_currencies(self) -> dict[str, list[str]]:
        """Currency -> the names of the projects priced in it."""
        out: dict[str, list[str]] = {}
        for currency, name in await self._read("SELECT currency, name FROM projects ORDER BY id"):
            out.setdefault(currency, []).append(name)
        return out


if TYPE_CHECKING:  # mypy proves SqliteStore keeps the call path's contract
    from .base import CallStore

    _keeps_contract: CallStore = SqliteStore(":memory:")
