"""The embedded store: one SQLite connection on one worker thread, one writer at a time.

Every write is one function run on the store's own worker thread (``_transaction``):
``BEGIN IMMEDIATE`` (takes SQLite's write lock at once, so another process — the
operator CLI — waits in ``busy_timeout`` instead of failing halfway), the
statements, ``COMMIT``, or ``ROLLBACK`` if anything failed; sqlite3 errors become
``rating.errors`` there (``_translated``), so none leaves this module. Transactions
are short and never span a prompt or a Dial.

No overdraft: a reservation is one conditional UPDATE (``balance_s - reserved_s``
must cover it), the schema's CHECKs forbid a negative balance as a backstop, and
settling debits at most what was reserved. What to hold and what to debit are
``rating.holds``' decisions, the same for every backend.

Thread hops: each call to the worker thread wakes the event loop for the answer,
about 85 µs of CPU on a 2-core machine — more than the SQL itself. So a read is one
hop and a call's writes (reserve, settle, CDR, bind, activation, PIN failure) run
their whole transaction as one function there: one hop instead of one per statement
(``bench/`` measures it). The worker (``_Worker``) is our own thread holding the
``sqlite3`` connection, fed by a queue, answering through ``call_soon_threadsafe`` —
what aiosqlite does inside, but aiosqlite offers no public call that runs a function
on its thread, and ``run_in_executor`` costs about 30 % more CPU per hop.

Inline transactions: even one hop costs more than the SQL, so transactions first run
inline, on the event loop, on a second connection of our own (``_inline``) whose
``busy_timeout`` is 0: ``BEGIN IMMEDIATE`` either takes the write lock at once or
fails at once with ``SQLITE_BUSY`` (another process — the operator CLI, another
engine — holds it), and only then does the transaction go to the worker thread,
which waits there in ``busy_timeout``. So the loop never waits for a lock, and a lock
held elsewhere never blocks it. Between ``BEGIN`` and ``COMMIT`` nothing awaits, so
no other task runs inside an inline transaction; both connections write only under
``_lock``, so they never contend with each other. The inline connection never
checkpoints the WAL itself (``wal_autocheckpoint=0``: a checkpoint copies pages and
syncs the file); the worker thread runs a passive one every ``CHECKPOINT_EVERY``
inline commits instead, in two steps: the bulk of it (copying the pages, syncing)
while calls go on committing, then once more under ``_lock`` for the few frames
committed meanwhile (racing our own commits it would never copy the whole WAL, and
SQLite restarts the WAL from its beginning only after a whole copy). Holding the lock
for the whole copy made every call's write wait for it: on a machine busy with I/O
it took longer than ``store_budget_ms`` and calls failed closed (``bench/``). The
routing snapshot's change check (``PRAGMA data_version``) reads the inline
connection, whose own commits are never a change by another connection.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from ..billing import BillingRule
from ..errors import (
    AlreadyExists,
    CardUnusable,
    InsufficientBalance,
    InvalidInput,
    NotFound,
    RatingError,
    StoreUnavailable,
)
from ..holds import grant_hold, is_stale, settlement_debit
from ..models import (
    AccountLine,
    AccountSettings,
    Binding,
    BindingEvent,
    BindResult,
    BlockedNumber,
    BoundReservation,
    Card,
    Cdr,
    Grant,
    HoldCall,
    HoldSettlement,
    LedgerEntry,
    OpenHold,
    Payment,
    PinAttempt,
    PinFailureSummary,
    Project,
    Routing,
)
from ..routes import Route
from ..settlement import settlement
from ..zones import QuotaPeriod, charge
from ._rows import (
    _ACCOUNT_UPDATABLE,
    _BLOCKED_COLS,
    _CARD_COLS,
    _CARD_INSERT_FREE,
    _CDR_COLS,
    _CDR_INSERT,
    _PAID_SUM,
    _PAYMENT_COLS,
    _PAYMENT_LINES,
    _PROJECT_COLS,
    _PROJECT_UPDATABLE,
    _PURCHASE_INSERT,
    PIN_FAILURE_RETENTION_MS,
    ROUTE_COLS,
    HookFailed,
    _card,
    _payment,
    _project,
    cdr_values,
    check_correction,
    new_card,
    no_free_pin,
    route_of,
    run_hook,
)
from ._schema import MIGRATIONS, SchemaMode, check_schema
from .base import FailureObserver, StoreObserver

__all__ = ["SqliteStore", "StoreObserver"]

T = TypeVar("T")


# Writes that never change projects, numbers or blocks: they leave the routing snapshot valid.
_ROUTING_NEUTRAL = frozenset({"reserve", "settle", "write_cdr", "settle_and_record", "settle_and_record_once",
                              "bind", "activate",
                              "pin_failure", "pin_attempt", "pin_attempt_end", "pin_failures_clear",
                              "create_card", "create_cards", "recharge", "adjust", "set_pin", "set_blocked",
                              "set_expiry", "unbind", "add_payment", "correct_payment", "account_currency",
                              "account_settings"})


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """The boundary: a sqlite3 error becomes the ``rating.errors`` it means."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        text = str(exc)
        if "FOREIGN KEY" in text:
            raise NotFound(f"{operation}: a referenced row does not exist") from exc
        if "UNIQUE" in text or "PRIMARY KEY" in text:
            raise AlreadyExists(f"{operation}: already exists ({text})") from exc
        raise InvalidInput(f"{operation}: refused by the database ({text})") from exc
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"{operation}: {exc}") from exc


def _run_transaction(conn: sqlite3.Connection, operation: str, body: Callable[[sqlite3.Connection], T], *,
                     begun: bool = False) -> T:
    """``BEGIN IMMEDIATE`` (unless ``begun``), ``body``, ``COMMIT``, or ``ROLLBACK`` if
    anything failed; sqlite3 errors translated."""
    with _translated(operation):
        if not begun:
            conn.execute("BEGIN IMMEDIATE")
        committed = False
        try:
            result = body(conn)
            conn.execute("COMMIT")
            committed = True
        finally:
            if not committed:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # nothing was left open
    return result


# Inline commits between two passive WAL checkpoints on the worker thread (a call
# writes a few pages per transaction: near SQLite's own 1,000-page threshold).
CHECKPOINT_EVERY = 100


class _Busy(Exception):
    """The inline ``BEGIN IMMEDIATE`` found the write lock taken: go to the thread."""


def _run_inline(conn: sqlite3.Connection, operation: str, body: Callable[[sqlite3.Connection], T]) -> T:
    """``_run_transaction`` on the event loop, with ``busy_timeout=0``. Raises _Busy,
    before anything ran, when another connection holds the write lock."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise _Busy(operation) from exc
        raise StoreUnavailable(f"{operation}: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"{operation}: {exc}") from exc
    return _run_transaction(conn, operation, body, begun=True)


class _Worker:
    """One thread running the functions it is given, in order; ``run`` awaits the answer."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.AbstractEventLoop, asyncio.Future[Any]]
                                      | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="ivr-sqlite", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, loop, future = job
            try:
                result = fn()
            except Exception as exc:  # handed to the awaiting task, which re-raises it
                loop.call_soon_threadsafe(_set_exception, future, exc)
            else:
                loop.call_soon_threadsafe(_set_result, future, result)

    async def run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, future))
        return await future

    def stop(self) -> None:
        """After the jobs already queued; waits for the thread."""
        self._jobs.put(None)
        self._thread.join()


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)


def _private(path: str, *, create: bool) -> None:
    """Mode 0600 for a database file whatever the umask (cards, bindings and PIN hashes are
    in it): created so, or tightened if it exists with more."""
    if create and not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        pass


def _quota_left(db: sqlite3.Connection, card_id: int, quota: QuotaPeriod | None) -> int:
    if quota is None or quota.limit_s <= 0:
        return 0
    row = db.execute("SELECT used_s FROM card_quota WHERE card_id = ? AND month = ?",
                     (card_id, quota.month)).fetchone()
    return max(0, quota.limit_s - (row[0] if row else 0))


def _reserve(db: sqlite3.Connection, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int,
             hold_s: int, now_ms: int, quota: QuotaPeriod | None = None, call: HoldCall | None = None) -> Grant:
    """Inside a transaction: see ``SqliteStore.reserve``."""
    # Holds of crashed engines expire, so a card is never locked forever.
    for res_id, seconds, expires_ms in db.execute(
            "SELECT id, seconds, expires_ms FROM reservations WHERE card_id = ? AND state = 'open'",
            (card_id,)).fetchall():
        if is_stale(expires_ms, now_ms):
            db.execute("UPDATE reservations SET state = 'released' WHERE id = ?", (res_id,))
            db.execute("UPDATE cards SET reserved_s = reserved_s - ?,"
                       " active_calls = MAX(active_calls - 1, 0) WHERE id = ?", (seconds, card_id))
    row = db.execute(f"SELECT {_CARD_COLS} FROM cards WHERE id = ?", (card_id,)).fetchone()
    if row is None:
        raise NotFound(f"no card {card_id}")
    plan = grant_hold(_card(row), rule=rule, max_calls=max_calls, hold_s=hold_s, now_ms=now_ms)
    # The conditional UPDATE is the guard; grant_hold only picks the amount or the error.
    cur = db.execute(
        "UPDATE cards SET reserved_s = reserved_s + ?, active_calls = active_calls + 1"
        " WHERE id = ? AND balance_s - reserved_s >= ? AND active_calls < ?",
        (plan.seconds, card_id, plan.seconds, max_calls))
    if cur.rowcount != 1:  # pragma: no cover - the write lock makes this unreachable
        raise InsufficientBalance(f"card {card_id} changed under the reservation")
    cur = db.execute(
        "INSERT INTO reservations (card_id, uniqueid, seconds, created_ms, expires_ms, max_talk_s, connect_s,"
        " minimum_s, initial_s, increment_s, caller_raw, caller_e164, dialled, call_start_ms, asterisk)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (card_id, uniqueid, plan.seconds, now_ms, plan.expires_ms, plan.max_talk_s, rule.connect_s,
         rule.minimum_s, rule.initial_s, rule.increment_s, call.caller_raw if call else None,
         call.caller_e164 if call else None, call.dialled if call else None, call.start_ms if call else None,
         call.asterisk if call else None))
    return Grant(reservation_id=cur.lastrowid or 0, card_id=card_id, reserved_s=plan.seconds,
                 max_talk_s=plan.max_talk_s, available_before_s=plan.available_before_s,
                 quota_left_s=_quota_left(db, card_id, quota))


def _settle(db: sqlite3.Connection, grant: Grant, *, debit_s: int, uniqueid: str, now_ms: int,
            factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> tuple[int, int]:
    """Inside a transaction: see ``SqliteStore.settle``. Returns (seconds debited, quota seconds used)."""
    if db.execute("SELECT 1 FROM reservations WHERE id = ? AND state = 'open'",
                  (grant.reservation_id,)).fetchone() is None:
        return 0, 0
    # The quota left is read here, under the write lock: two calls of one card never use
    # the same included seconds, whatever each was told when its time was held.
    charged, quota_used = charge(max(0, debit_s), factor_pm, _quota_left(db, grant.card_id, quota))
    if quota is not None and quota_used:
        db.execute("INSERT INTO card_quota (card_id, month, used_s) VALUES (?, ?, ?)"
                   " ON CONFLICT (card_id, month) DO UPDATE SET used_s = used_s + excluded.used_s",
                   (grant.card_id, quota.month, quota_used))
    debit_s = settlement_debit(grant.reserved_s, charged)
    cur = db.execute("UPDATE reservations SET state = 'settled' WHERE id = ? AND state = 'open'",
                     (grant.reservation_id,))
    if cur.rowcount != 1:  # pragma: no cover - checked above under the same lock
        return 0, 0
    db.execute("UPDATE cards SET balance_s = balance_s - ?, reserved_s = reserved_s - ?,"
               " active_calls = active_calls - 1 WHERE id = ?", (debit_s, grant.reserved_s, grant.card_id))
    if debit_s:
        db.execute("INSERT INTO ledger (card_id, at_ms, kind, seconds, reference) VALUES (?, ?, 'debit', ?, ?)",
                   (grant.card_id, now_ms, -debit_s, uniqueid))
    return debit_s, quota_used


def _history(db: sqlite3.Connection, project_id: int, card_id: int, caller: str, action: str, source: str,
             actor: str, at_ms: int) -> None:
    db.execute("INSERT INTO binding_history (project_id, card_id, caller, action, source, actor, at_ms)"
               " VALUES (?,?,?,?,?,?,?)", (project_id, card_id, caller, action, source, actor, at_ms))


def _bind(db: sqlite3.Connection, *, project_id: int, caller: str, card_id: int, now_ms: int, source: str,
          max_bound: int, evict: bool, actor: str) -> BindResult:
    """On the worker thread, inside a transaction: see ``SqliteStore.bind``."""
    if db.execute("SELECT 1 FROM cards WHERE id = ?", (card_id,)).fetchone() is None:
        raise NotFound(f"no card {card_id}")
    current = db.execute("SELECT card_id FROM bindings WHERE project_id = ? AND caller = ?",
                         (project_id, caller)).fetchone()
    if current is not None and current[0] == card_id:
        return BindResult(bound=True, evicted=())
    lines = [r[0] for r in db.execute("SELECT caller FROM bindings WHERE card_id = ?"
                                      " ORDER BY bound_ms, rowid", (card_id,)).fetchall()]
    excess = len(lines) + 1 - max_bound
    if excess > 0 and not evict:
        _history(db, project_id, card_id, caller, "refused", source, actor, now_ms)
        return BindResult(bound=False, evicted=())
    evicted = tuple(lines[:max(excess, 0)])
    for line in evicted:
        db.execute("DELETE FROM bindings WHERE project_id = ? AND caller = ?", (project_id, line))
        _history(db, project_id, card_id, line, "unbind", "evicted", actor, now_ms)
    if current is not None:
        _history(db, project_id, current[0], caller, "unbind", "moved", actor, now_ms)
    db.execute(
        "INSERT INTO bindings (project_id, caller, card_id, bound_ms, source) VALUES (?,?,?,?,?)"
        " ON CONFLICT (project_id, caller) DO UPDATE SET card_id = excluded.card_id,"
        " bound_ms = excluded.bound_ms, source = excluded.source",
        (project_id, caller, card_id, now_ms, source))
    _history(db, project_id, card_id, caller, "bind", source, actor, now_ms)
    db.execute("UPDATE cards SET activated_ms = ? WHERE id = ? AND activated_ms IS NULL", (now_ms, card_id))
    return BindResult(bound=True, evicted=evicted)


def _begin_pin_attempt(db: sqlite3.Connection, *, project_id: int, caller_key: str, now_ms: int, window_ms: int,
                       line_cap: int | None, project_cap: int, entering_cap: int,
                       entering_ms: int) -> PinAttempt:
    """On the worker thread, inside a transaction: see ``SqliteStore.begin_pin_attempt``."""
    since = now_ms - window_ms
    by_caller, in_project, entering = db.execute(
        "SELECT IFNULL(SUM(caller_key = ?), 0), COUNT(*), IFNULL(SUM(pending = 1 AND at_ms >= ?), 0)"
        " FROM pin_failures WHERE project_id = ? AND at_ms >= ?",
        (caller_key, now_ms - entering_ms, project_id, since)).fetchone()
    refused = None
    if line_cap is not None and by_caller >= line_cap:
        refused = "line"
    elif in_project >= project_cap:
        refused = "project"
    elif entering >= entering_cap:
        refused = "busy"
    attempt_id = None
    if refused is None:
        cur = db.execute("INSERT INTO pin_failures (project_id, caller_key, at_ms, pending) VALUES (?,?,?,1)",
                         (project_id, caller_key, now_ms))
        attempt_id = cur.lastrowid
        db.execute("DELETE FROM pin_failures WHERE project_id = ? AND at_ms < ?",
                   (project_id, now_ms - PIN_FAILURE_RETENTION_MS))
    return PinAttempt(attempt_id=attempt_id, refused=refused, by_caller=int(by_caller),
                      in_project=int(in_project), entering=int(entering))


def _settle_hold(db: sqlite3.Connection, hold_id: int, *, uniqueid: str, talk_ms: int, cdr: Cdr, now_ms: int,
                 limit_s: int | None, factor_pm: int, quota: QuotaPeriod | None) -> HoldSettlement:
    """Inside a transaction: see ``SqliteStore.settle_hold``."""
    row = db.execute(
        "SELECT r.card_id, r.uniqueid, r.seconds, r.state, r.max_talk_s, r.connect_s, r.minimum_s,"
        " r.initial_s, r.increment_s, r.caller_raw, r.caller_e164, r.dialled, r.call_start_ms, r.created_ms,"
        " c.project_id, p.connect_s, p.minimum_s, p.initial_s, p.increment_s"
        " FROM reservations r JOIN cards c ON c.id = r.card_id JOIN projects p ON p.id = c.project_id"
        " WHERE r.id = ?", (hold_id,)).fetchone()
    if row is None or row[1] != uniqueid:
        return HoldSettlement(state="unknown", hold_id=hold_id)
    (card_id, _, reserved_s, state, max_talk_s, connect_s, minimum_s, initial_s, increment_s, caller_raw,
     caller_e164, dialled, start_ms, created_ms, project_id, *project_rule) = row
    if state != "open":
        return HoldSettlement(state="already_settled" if state == "settled" else state, hold_id=hold_id,
                              card_id=card_id)
    # The rule the hold was granted with; a hold made before migration 5 has none: the
    # project's current rule, the talk limit recomputed from the seconds held.
    rule = (BillingRule(connect_s=connect_s, minimum_s=minimum_s, initial_s=initial_s, increment_s=increment_s)
            if connect_s is not None else BillingRule(*project_rule))
    if max_talk_s is None:
        max_talk_s = rule.max_talk(reserved_s)
    if limit_s is not None:  # the leg's own L() (its zone factor), never above the hold's
        max_talk_s = min(max_talk_s, limit_s)
    decided = settlement(rule, talk_ms=talk_ms, max_talk_s=max_talk_s, reserved_s=reserved_s)
    grant = Grant(reservation_id=hold_id, card_id=card_id, reserved_s=reserved_s, max_talk_s=max_talk_s,
                  available_before_s=0)
    debited, quota_used = _settle(db, grant, debit_s=decided.debit_s, uniqueid=uniqueid, now_ms=now_ms,
                                  factor_pm=factor_pm, quota=quota)
    cdr.project_id, cdr.card_id = project_id, card_id
    if caller_raw is not None:
        cdr.caller_raw, cdr.caller_e164 = caller_raw, caller_e164
    cdr.dialled = dialled if dialled is not None else cdr.dialled
    cdr.start_ms = start_ms if start_ms is not None else created_ms
    cdr.talk_s, cdr.debited_s, cdr.quota_used_s, cdr.factor_pm = decided.talk_s, debited, quota_used, factor_pm
    _insert_cdr(db, cdr)
    return HoldSettlement(state="settled", hold_id=hold_id, card_id=card_id, talk_s=decided.talk_s,
                          debited_s=debited)


def _hold_state(db: sqlite3.Connection, hold_id: int) -> str | None:
    row = db.execute("SELECT state FROM reservations WHERE id = ?", (hold_id,)).fetchone()
    return None if row is None else str(row[0])


def _insert_cdr(db: sqlite3.Connection, cdr: Cdr) -> None:
    db.execute(_CDR_INSERT, cdr_values(cdr))


def _routes_by_project(rows: Sequence[Sequence[Any]]) -> dict[int, tuple[Route, ...]]:
    out: dict[int, list[Route]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(route_of(row))
    return {k: tuple(v) for k, v in out.items()}


def _sync_legacy_destinations(db: sqlite3.Connection, project_id: int) -> None:
    """Keep ``projects.service`` / ``fallback`` what they meant before rules existed: the
    first rule's destination, and the first later rule tried on busy or no answer."""
    rows = db.execute("SELECT position, destination, conditions FROM routes WHERE project_id = ?"
                      " ORDER BY position", (project_id,)).fetchall()
    if not rows:
        raise InvalidInput("a project needs at least one forwarding rule")
    fallback = next((r[1] for r in rows[1:] if r[2] == "busy,noanswer"), None)
    db.execute("UPDATE projects SET service = ?, fallback = ? WHERE id = ?", (rows[0][1], fallback, project_id))


def _renumber_routes(db: sqlite3.Connection, project_id: int, order: Sequence[int]) -> None:
    """Give the rules with these ids positions 1, 2, … in this order."""
    for position, route_id in enumerate(order, start=1):
        db.execute("UPDATE routes SET position = ? WHERE id = ?", (position, route_id))


def _insert_route(db: sqlite3.Connection, project_id: int, route: Route, position: int | None) -> None:
    ids = [r[0] for r in db.execute("SELECT id FROM routes WHERE project_id = ? ORDER BY position",
                                    (project_id,)).fetchall()]
    hours = route.hours.text() if route.hours else ""
    closed = route.hours.closed_text() if route.hours else ""
    cur = db.execute("INSERT INTO routes (project_id, position, destination, conditions, hours, closed_on,"
                     " ring_timeout_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (project_id, len(ids) + 1, route.destination, route.conditions_text(), hours, closed,
                      route.ring_timeout_s))
    at = len(ids) if position is None else max(0, min(position - 1, len(ids)))
    ids.insert(at, cur.lastrowid or 0)
    _renumber_routes(db, project_id, ids)


def _legacy_to_routes(db: sqlite3.Connection, project_id: int, changes: Mapping[str, Any]) -> None:
    """``--service`` changes the first rule's destination; ``--fallback`` the first later
    rule tried on busy or no answer (added as rule 2 if there is none, removed when cleared)."""
    if "service" in changes:
        db.execute("UPDATE routes SET destination = ? WHERE project_id = ? AND position ="
                   " (SELECT MIN(position) FROM routes WHERE project_id = ?)",
                   (changes["service"], project_id, project_id))
    if "fallback" in changes:
        rows = db.execute(
            "SELECT id FROM routes WHERE project_id = ? AND conditions = 'busy,noanswer' AND position >"
            " (SELECT MIN(position) FROM routes WHERE project_id = ?) ORDER BY position LIMIT 1",
            (project_id, project_id)).fetchall()
        fallback = changes["fallback"]
        if rows and fallback is None:
            db.execute("DELETE FROM routes WHERE id = ?", (rows[0][0],))
        elif rows:
            db.execute("UPDATE routes SET destination = ? WHERE id = ?", (fallback, rows[0][0]))
        elif fallback is not None:
            db.execute("UPDATE routes SET position = position + 1 WHERE project_id = ? AND position > 1",
                       (project_id,))
            db.execute("INSERT INTO routes (project_id, position, destination, conditions)"
                       " VALUES (?, 2, ?, 'busy,noanswer')", (project_id, fallback))


def _migrate(db: sqlite3.Connection, schema: SchemaMode) -> int:
    """Inside a transaction: see ``check_schema``; applies the migrations it allows.
    Returns the version found."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number in check_schema(version, len(MIGRATIONS), schema):
        for statement in MIGRATIONS[number - 1].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version={number}")
    return version


def _open_inline(path: str) -> sqlite3.Connection:
    """The event loop's own connection: never waits for a lock, never checkpoints."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        for pragma in ("busy_timeout=0", "foreign_keys=ON", "synchronous=NORMAL", "wal_autocheckpoint=0"):
            conn.execute(f"PRAGMA {pragma}")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


class SqliteStore:
    def __init__(self, path: str | Path, *, observer: StoreObserver | None = None,
                 schema: SchemaMode = "check", busy_timeout_ms: int = 5000,
                 on_failure: FailureObserver | None = None) -> None:
        """``busy_timeout_ms``: how long a write waits for another process's write lock
        (SQLite's busy handler) and for this connection's own queue of writes; then it
        fails with StoreUnavailable. The engine gives calls a short budget, the CLI waits longer."""
        self._on_failure = on_failure
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._worker: _Worker | None = None
        self._lock = asyncio.Lock()
        self._config_generation = 0
        self._routing: Routing | None = None
        self._routing_key: tuple[int, int] = (-1, -1)
        self._routing_checked = float("-inf")
        self._observer = observer
        self._schema: SchemaMode = schema
        self.schema_found: int | None = None  # the version ``open`` found (``ivr db status|migrate``)
        self._inline: sqlite3.Connection | None = None
        self._inline_commits = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self.thread_fallbacks = 0  # inline transactions that found the write lock taken

    # --- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        """Connect and check the schema (``_schema.check_schema``). Raises StoreUnavailable, SchemaMismatch."""
        self._worker = _Worker()

        def connect() -> int:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                _private(self.path, create=True)
            # Created on the worker thread and only ever used there.
            conn = self._conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            if self.path != ":memory:":
                for suffix in ("-wal", "-shm", "-journal"):  # SQLite gives them the file's mode; make sure
                    _private(self.path + suffix, create=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            return _run_transaction(conn, "migrate", lambda db: _migrate(db, self._schema))

        try:
            self.schema_found = await self._on_worker(connect, f"cannot open database {self.path}")
            if self.path != ":memory:":  # a second :memory: connection would be another database
                with _translated(f"cannot open database {self.path}"):
                    self._inline = _open_inline(self.path)
        except (RatingError, OSError) as exc:
            await self.close()
            if isinstance(exc, OSError):
                raise StoreUnavailable(f"cannot open database {self.path}: {exc}") from exc
            raise

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
            self._checkpoint = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._worker is None:
            return
        worker, self._worker = self._worker, None  # no new jobs; those queued run first
        if self._conn is not None:
            await worker.run(self._conn.close)
            self._conn = None
        worker.stop()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def pool_stats(self) -> None:
        """No pool: one writer connection and its worker thread."""
        return None

    async def schema_version(self) -> int:
        rows = await self._read("PRAGMA user_version")
        return int(rows[0][0])

    # --- the worker thread and the one transaction helper -------------------
    async def _on_worker(self, fn: Callable[[], T], operation: str) -> T:
        """``fn()`` on the worker thread, sqlite3 errors translated."""
        if self._worker is None:
            raise StoreUnavailable("store is not open")

        def guarded() -> T:
            with _translated(operation):
                return fn()

        return await self._worker.run(guarded)

    def _db(self) -> sqlite3.Connection:
        """The connection, on the worker thread only."""
        if self._conn is None:  # pragma: no cover - _on_worker checks first
            raise StoreUnavailable("store is not open")
        return self._conn

    def _note_write(self, operation: str) -> None:
        if operation not in _ROUTING_NEUTRAL:
            self._config_generation += 1

    async def _transaction(self, operation: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """The one way to write: ``body(conn)`` inside ``BEGIN IMMEDIATE`` … ``COMMIT``, in
        one hop to the worker thread, under the lock. A failing statement, BEGIN or COMMIT
        rolls back and raises the ``rating.errors`` it means; whatever ``body`` raises rolls
        back and propagates. The observer hears of every successful one."""
        started = time.perf_counter()
        self._note_write(operation)
        async with self._queued(operation):
            try:
                inline = self._inline
                try:
                    if inline is None:
                        raise _Busy(operation)
                    result = _run_inline(inline, operation, body)  # module docstring: inline transactions
                    self._committed_inline()
                except _Busy:
                    if inline is not None:
                        self.thread_fallbacks += 1
                    result = await self._on_worker(lambda: _run_transaction(self._db(), operation, body),
                                                   operation)
            except StoreUnavailable:
                if self._on_failure is not None:
                    self._on_failure(operation)
                raise
            finally:
                # Mark the routing snapshot stale once more when the write ends (committed or
                # rolled back): a snapshot read while it was open may hold its uncommitted rows.
                self._note_write(operation)
        if self._observer is not None:
            self._observer(operation, time.perf_counter() - started)
        return result

    @asynccontextmanager
    async def _queued(self, operation: str) -> AsyncIterator[None]:
        """The writer lock, waited for at most ``busy_timeout_ms``: calls queued behind a
        write stuck in SQLite's busy handler fail within their budget instead of each
        waiting for all the ones before it."""
        try:
            async with asyncio.timeout(self.busy_timeout_ms / 1000):
                await self._lock.acquire()
        except TimeoutError:
            raise StoreUnavailable(f"{operation}: the store's writer is busy") from None
        try:
            yield
        finally:
            self._lock.release()

    def _committed_inline(self) -> None:
        """Count inline commits; every ``CHECKPOINT_EVERY`` start a passive checkpoint on
        the worker thread (the loop goes on; our writers wait for the lock meanwhile)."""
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY == 0 and (self._checkpoint is None or self._checkpoint.done()):
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        def checkpoint() -> list[Any]:
            return self._db().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        try:
            await self._on_worker(checkpoint, "checkpoint")   # calls go on writing meanwhile
            async with self._lock:                            # what they wrote meanwhile: a few frames
                await self._on_worker(checkpoint, "checkpoint")
        except RatingError:
            pass  # the store is closing, or busy: the next one will do it

    def _inline_data_version(self) -> int | None:
        """``PRAGMA data_version`` of the inline connection (no lock needed); -1, which
        matches no snapshot, if it cannot be read; None without an inline connection."""
        if self._inline is None:
            return None
        try:
            return int(self._inline.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return -1

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._on_worker(lambda: self._db().execute(sql, params).fetchall(), "read")

    # --- projects ----------------------------------------------------------
    async def create_project(self, *, name: str, numbers: Sequence[str], service: str,
                             fallback: str | None, ring_timeout_s: int, language: str, region: str,
                             price_per_minute_cents: int, currency: str, rule: BillingRule,
                             warning_s: int, pin_length: int, max_bound_numbers: int,
                             max_simultaneous_calls: int, card_validity_days: int | None,
                             now_ms: int) -> Project:
        def body(db: sqlite3.Connection) -> None:
            cur = db.execute(
                "INSERT INTO projects (name, service, fallback, ring_timeout_s, language, region,"
                " price_per_minute_cents, currency, connect_s, minimum_s, initial_s, increment_s,"
                " warning_s, pin_length, max_bound_numbers, max_simultaneous_calls,"
                " card_validity_days, created_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, service, fallback, ring_timeout_s, language, region, price_per_minute_cents,
                 currency, rule.connect_s, rule.minimum_s, rule.initial_s, rule.increment_s,
                 warning_s, pin_length, max_bound_numbers, max_simultaneous_calls,
                 card_validity_days, now_ms))
            for number in numbers:
                db.execute("INSERT INTO access_numbers (number, project_id) VALUES (?, ?)", (number, cur.lastrowid))
            # The service and fallback are the first rules, as migration 4 makes them.
            db.execute("INSERT INTO routes (project_id, position, destination, conditions)"
                       " VALUES (?, 1, ?, 'always')", (cur.lastrowid, service))
            if fallback is not None:
                db.execute("INSERT INTO routes (project_id, position, destination, conditions)"
                           " VALUES (?, 2, ?, 'busy,noanswer')", (cur.lastrowid, fallback))

        try:
            await self._transaction("create_project", body)
        except AlreadyExists as exc:
            raise AlreadyExists(f"project name or access number already in use ({exc})") from exc
        project = await self.project_by_name(name)
        assert project is not None
        return project

    async def _project(self, where: str, params: Sequence[Any]) -> Project | None:
        sql = f"SELECT {_PROJECT_COLS} FROM projects WHERE {where}"

        def both() -> tuple[list[Any], list[Any], list[Any]]:  # one hop
            conn = self._db()
            rows = conn.execute(sql, params).fetchall()
            if not rows:
                return rows, [], []
            return (rows, conn.execute("SELECT number FROM access_numbers WHERE project_id = ? ORDER BY number",
                                       (rows[0][0],)).fetchall(),
                    conn.execute(f"SELECT {ROUTE_COLS} FROM routes WHERE project_id = ? ORDER BY position",
                                 (rows[0][0],)).fetchall())

        rows, numbers, routes = await self._on_worker(both, "project")
        if not rows:
            return None
        return _project(rows[0], tuple(n[0] for n in numbers), _routes_by_project(routes).get(rows[0][0], ()))

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
        cached_key, generation = self._routing_key, self._config_generation
        if (self._routing is not None and generation == cached_key[1]
                and time.monotonic() - self._routing_checked < max_age_s):
            return self._routing

        # With the inline connection, its data_version says whether another connection
        # committed (its own commits are never that) without a thread hop; the rows then
        # come from the thread, at least as new as that version.
        inline_version = self._inline_data_version()
        if inline_version is not None and (inline_version, generation) == cached_key and self._routing is not None:
            self._routing_checked = time.monotonic()
            return self._routing

        def load() -> tuple[int, list[Any], list[Any], list[Any], list[Any]] | tuple[int]:
            # One function on the worker thread: never between the statements of a write.
            conn = self._db()
            if inline_version is None:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if (version, generation) == cached_key:
                    return (version,)
            else:
                version = inline_version
            projects = conn.execute(f"SELECT {_PROJECT_COLS} FROM projects").fetchall()
            numbers = conn.execute("SELECT number, project_id FROM access_numbers ORDER BY number").fetchall()
            blocked = conn.execute(f"SELECT {_BLOCKED_COLS} FROM blacklist ORDER BY id").fetchall()
            routes = conn.execute(f"SELECT {ROUTE_COLS} FROM routes ORDER BY project_id, position").fetchall()
            return version, projects, numbers, blocked, routes

        loaded = await self._on_worker(load, "routing")
        self._routing_checked = time.monotonic()
        if len(loaded) == 1 and self._routing is not None:
            return self._routing
        if len(loaded) == 1:  # pragma: no cover - a key match implies a snapshot
            self._routing_key = (-1, -1)
            return await self.routing()
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

        def body(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO cards (project_id, note, pin_hash, balance_s, price_cents, created_ms,"
                " expires_ms) VALUES (?,?,?,?,?,?,?)",
                (project_id, note, pin_hash, seconds, price_cents, now_ms, expires_ms))
            card_id = cur.lastrowid or 0
            db.execute("INSERT INTO ledger (card_id, at_ms, kind, seconds, amount_cents, reference)"
                       " VALUES (?, ?, 'purchase', ?, ?, '')", (card_id, now_ms, seconds, price_cents))
            return card_id

        try:
            card_id = await self._transaction("create_card", body)
        except AlreadyExists as exc:
            raise AlreadyExists("PIN already used in this project") from exc
        return await self.card(card_id)

    async def create_cards(self, *, project_id: int, note: str, count: int, pin_hashes: Iterable[str],
                           seconds: int, price_cents: int, now_ms: int, expires_ms: int | None,
                           before_commit: Callable[[Sequence[tuple[Card, str]]], None] | None = None,
                           ) -> list[tuple[Card, str]]:
        """See ``OperatorStore.create_cards``: one ``BEGIN IMMEDIATE`` … ``COMMIT``."""
        if seconds <= 0:
            raise InvalidInput("a card needs a positive number of seconds")
        hashes = iter(pin_hashes)

        def body(db: sqlite3.Connection) -> list[tuple[Card, str]]:
            made: list[tuple[Card, str]] = []
            for _ in range(count):
                for hashed in hashes:
                    cur = db.execute(_CARD_INSERT_FREE,
                                     (project_id, note, hashed, seconds, price_cents, now_ms, expires_ms))
                    if cur.rowcount == 1:
                        break
                else:
                    raise no_free_pin(len(made), count)
                card_id = cur.lastrowid or 0
                db.execute(_PURCHASE_INSERT, (card_id, now_ms, seconds, price_cents))
                made.append((new_card(card_id, project_id=project_id, note=note, seconds=seconds,
                                      price_cents=price_cents, now_ms=now_ms, expires_ms=expires_ms), hashed))
            run_hook(before_commit, made)
            return made

        try:
            return await self._transaction("create_cards", body)
        except HookFailed as exc:  # the caller's own error, as it raised it
            assert exc.__cause__ is not None
            raise exc.__cause__ from None

    async def card_count(self, project_id: int) -> int:
        rows = await self._read("SELECT COUNT(*) FROM cards WHERE project_id = ?", (project_id,))
        return int(rows[0][0])

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

    async def _update_card(self, operation: str, sql: str, params: Sequence[Any], card_id: int) -> None:
        """One UPDATE of one card; NotFound when there is no such card."""
        def body(db: sqlite3.Connection) -> None:
            if db.execute(sql, params).rowcount == 0:
                raise NotFound(f"no card {card_id}")

        await self._transaction(operation, body)

    async def set_pin_hash(self, card_id: int, pin_hash: str) -> None:
        try:
            await self._update_card("set_pin", "UPDATE cards SET pin_hash = ? WHERE id = ?", (pin_hash, card_id),
                                    card_id)
        except AlreadyExists as exc:
            raise AlreadyExists("PIN already used in this project") from exc

    async def set_blocked(self, card_id: int, blocked: bool) -> None:
        await self._update_card("set_blocked", "UPDATE cards SET blocked = ? WHERE id = ?",
                                (int(blocked), card_id), card_id)

    async def recharge(self, card_id: int, seconds: int, price_cents: int, now_ms: int) -> Card:
        if seconds <= 0:
            raise InvalidInput("recharge needs a positive number of seconds")

        def body(db: sqlite3.Connection) -> None:
            if db.execute("UPDATE cards SET balance_s = balance_s + ? WHERE id = ?", (seconds, card_id)).rowcount == 0:
                raise NotFound(f"no card {card_id}")
            db.execute("INSERT INTO ledger (card_id, at_ms, kind, seconds, amount_cents)"
                       " VALUES (?, ?, 'recharge', ?, ?)", (card_id, now_ms, seconds, price_cents))

        await self._transaction("recharge", body)
        return await self.card(card_id)

    async def adjust(self, card_id: int, seconds: int, reason: str, now_ms: int) -> Card:
        """Correct a card's balance by ``seconds`` (signed), as a ledger row of its own.

        Raises:
            NotFound; InsufficientBalance when it would take time that is not free.
        """
        def body(db: sqlite3.Connection) -> None:
            cur = db.execute(
                "UPDATE cards SET balance_s = balance_s + ? WHERE id = ? AND balance_s - reserved_s + ? >= 0",
                (seconds, card_id, seconds))
            if cur.rowcount == 0:
                if db.execute("SELECT 1 FROM cards WHERE id = ?", (card_id,)).fetchone() is None:
                    raise NotFound(f"no card {card_id}")
                raise InsufficientBalance(f"card {card_id} has not {-seconds} s free to take")
            db.execute("INSERT INTO ledger (card_id, at_ms, kind, seconds, reference)"
                       " VALUES (?, ?, 'adjustment', ?, ?)", (card_id, now_ms, seconds, reason))

        await self._transaction("adjust", body)
        return await self.card(card_id)

    async def activate(self, card_id: int, now_ms: int) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute("UPDATE cards SET activated_ms = ? WHERE id = ? AND activated_ms IS NULL",
                       (now_ms, card_id))

        await self._transaction("activate", body)

    # --- bindings ----------------------------------------------------------
    async def bind(self, *, project_id: int, caller: str, card_id: int, now_ms: int, source: str,
                   max_bound: int, evict: bool = True, actor: str = "") -> BindResult:
        """Bind ``caller`` to the card (moving it from any older card of the project), and
        keep the change in the binding history. A card already at ``max_bound`` lines takes
        a new one only with ``evict`` (its oldest binding goes); without, nothing changes and
        the refusal is recorded. An operator binding counts as activation."""
        def body(db: sqlite3.Connection) -> BindResult:
            return _bind(db, project_id=project_id, caller=caller, card_id=card_id, now_ms=now_ms, source=source,
                         max_bound=max_bound, evict=evict, actor=actor)

        return await self._transaction("bind", body)

    async def unbind(self, project_id: int, caller: str, *, actor: str = "", now_ms: int | None = None) -> None:
        at_ms = now_ms if now_ms is not None else int(time.time() * 1000)

        def body(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT card_id FROM bindings WHERE project_id = ? AND caller = ?",
                             (project_id, caller)).fetchone()
            if row is None:
                raise NotFound(f"{caller} is not bound in this project")
            db.execute("DELETE FROM bindings WHERE project_id = ? AND caller = ?", (project_id, caller))
            _history(db, project_id, row[0], caller, "unbind", "operator", actor, at_ms)

        await self._transaction("unbind", body)

    async def binding_history(self, card_id: int) -> list[BindingEvent]:
        rows = await self._read("SELECT card_id, caller, action, source, actor, at_ms FROM binding_history"
                                " WHERE card_id = ? ORDER BY at_ms, id", (card_id,))
        return [BindingEvent(*r) for r in rows]

    async def bindings(self, card_id: int) -> list[Binding]:
        rows = await self._read("SELECT caller, card_id, bound_ms, source FROM bindings WHERE card_id = ?"
                                " ORDER BY bound_ms, rowid", (card_id,))
        return [Binding(*r) for r in rows]

    # --- reserve and settle -----------------------------------------------
    async def reserve(self, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int,
                      hold_s: int, now_ms: int, quota: QuotaPeriod | None = None,
                      call: HoldCall | None = None) -> Grant:
        """Hold card time for one call, atomically. ``call`` is kept with the hold for the
        CDR of a settlement by another engine (``settle_hold``).

        The free time (balance minus other calls' holds) is shared among the call
        slots still free, so a second simultaneous call cannot spend the first's.
        ``hold_s`` is how long the hold may live beyond its talk time (ring, prompts).
        With ``quota`` the grant says how much of the card's monthly quota is left.

        Raises:
            NotFound, CardBlocked, CardExpired, CardInUse, InsufficientBalance.
        """
        return await self._transaction("reserve", lambda db: _reserve(
            db, card_id=card_id, uniqueid=uniqueid, rule=rule, max_calls=max_calls, hold_s=hold_s, now_ms=now_ms,
            quota=quota, call=call))

    async def reserve_bound(self, *, project_id: int, caller: str, uniqueid: str, rule: BillingRule,
                            max_calls: int, hold_s: int, now_ms: int,
                            quota: QuotaPeriod | None = None,
                            call: HoldCall | None = None) -> BoundReservation | None:
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
                                 hold_s=hold_s, now_ms=now_ms, quota=quota, call=call)
            except CardUnusable as refusal:
                return BoundReservation(card=card, grant=None, refusal=refusal)
            return BoundReservation(card=card, grant=grant, refusal=None)

        return await self._transaction("reserve", body)

    async def settle(self, grant: Grant, *, debit_s: int, uniqueid: str, now_ms: int,
                     factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int:
        """Debit the real cost (capped at the hold) and release the rest. Idempotent:
        a reservation already settled or released debits nothing. Returns seconds debited.

        ``debit_s`` is the billing rule's debit (factor 1000); the store applies the zone's
        ``factor_pm`` and takes what it can from the card's ``quota`` of this month first
        (``rating.zones.charge``), reading the quota left inside the transaction."""
        return await self._transaction("settle", lambda db: _settle(
            db, grant, debit_s=debit_s, uniqueid=uniqueid, now_ms=now_ms, factor_pm=factor_pm, quota=quota)[0])

    async def settle_and_record(self, grant: Grant, *, debit_s: int, cdr: Cdr, now_ms: int,
                                factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int:
        """``settle`` and ``write_cdr`` in one transaction (one commit per call instead of
        two); the CDR gets the seconds really debited and the quota used. Returns the seconds.

        One CDR per call: when the hold was settled already (by the settle route or a
        reconciliation, which wrote the call's CDR with it) nothing is written; a hold
        released as stale has no CDR yet, so this one is written (debiting nothing)."""
        def body(db: sqlite3.Connection) -> int:
            if _hold_state(db, grant.reservation_id) == "settled":
                return 0
            cdr.debited_s, cdr.quota_used_s = _settle(db, grant, debit_s=debit_s, uniqueid=cdr.uniqueid,
                                                      now_ms=now_ms, factor_pm=factor_pm, quota=quota)
            cdr.factor_pm = factor_pm
            _insert_cdr(db, cdr)
            return cdr.debited_s

        return await self._transaction("settle_and_record", body)

    async def settle_and_record_once(self, grant: Grant | None, *, debit_s: int, cdr: Cdr, now_ms: int,
                                     factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int | None:
        """A journalled settlement and CDR, written exactly once however often it is
        replayed: nothing when this CDR is there already (same uniqueid, start and end)
        or, for a hold, when the hold was settled (with its CDR) by anyone. Otherwise as
        ``settle_and_record`` (or ``write_cdr`` without a hold). Returns the seconds
        debited, or None when nothing was written."""
        def body(db: sqlite3.Connection) -> int | None:
            if db.execute("SELECT 1 FROM cdrs WHERE start_ms = ? AND uniqueid = ? AND end_ms = ?",
                          (cdr.start_ms, cdr.uniqueid, cdr.end_ms)).fetchone():
                return None
            if grant is not None:
                row = db.execute("SELECT state FROM reservations WHERE id = ?",
                                 (grant.reservation_id,)).fetchone()
                if row is not None and row[0] == "settled":
                    return None
                cdr.debited_s, cdr.quota_used_s = _settle(db, grant, debit_s=debit_s, uniqueid=cdr.uniqueid,
                                                          now_ms=now_ms, factor_pm=factor_pm, quota=quota)
                cdr.factor_pm = factor_pm
            _insert_cdr(db, cdr)
            return cdr.debited_s

        return await self._transaction("settle_and_record_once", body)

    async def settle_hold(self, hold_id: int, *, uniqueid: str, talk_ms: int, cdr: Cdr, now_ms: int,
                          limit_s: int | None = None, factor_pm: int = 1000,
                          quota: QuotaPeriod | None = None) -> HoldSettlement:
        """Settle a hold by its id, from any engine sharing the database (the settle route,
        a reconciliation): debit ``talk_ms`` by the rule and talk limit the hold was
        granted with (and the leg's ``limit_s``, zone ``factor_pm`` and ``quota``, as
        ``settle``), capped at the seconds held, and write ``cdr`` — completed with the
        project, card and the call's facts kept with the hold — in one transaction.

        Idempotent: a hold that is not open, unknown, or made for another ``uniqueid``
        changes nothing (see ``HoldSettlement.state``), so the card is debited once and
        one CDR is written whoever arrives first."""
        return await self._transaction("settle", lambda db: _settle_hold(
            db, hold_id, uniqueid=uniqueid, talk_ms=talk_ms, cdr=cdr, now_ms=now_ms, limit_s=limit_s,
            factor_pm=factor_pm, quota=quota))

    async def open_holds(self, *, card_id: int | None = None) -> list[OpenHold]:
        """Holds not settled or released yet (every engine's), oldest first."""
        sql = ("SELECT r.id, r.uniqueid, r.card_id, c.project_id, p.name, r.seconds, r.max_talk_s, r.created_ms,"
               " r.expires_ms, r.caller_raw, r.asterisk FROM reservations r JOIN cards c ON c.id = r.card_id"
               " JOIN projects p ON p.id = c.project_id WHERE r.state = 'open'")
        params: tuple[Any, ...] = ()
        if card_id is not None:
            sql += " AND r.card_id = ?"
            params = (card_id,)
        rows = await self._read(sql + " ORDER BY r.id", params)
        return [OpenHold(*tuple(r)) for r in rows]

    # --- ledger, CDRs ------------------------------------------------------
    async def ledger(self, card_id: int) -> list[LedgerEntry]:
        rows = await self._read("SELECT id, card_id, at_ms, kind, seconds, amount_cents, reference"
                                " FROM ledger WHERE card_id = ? ORDER BY id", (card_id,))
        return [LedgerEntry(*r) for r in rows]

    async def write_cdr(self, cdr: Cdr) -> None:
        await self._transaction("write_cdr", lambda db: _insert_cdr(db, cdr))

    async def cdrs(self, *, card_id: int | None = None, limit: int = 1000) -> list[Cdr]:
        where, params = ("WHERE card_id = ?", [card_id]) if card_id is not None else ("", [])
        rows = await self._read(f"SELECT {_CDR_COLS} FROM cdrs {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [Cdr(*r) for r in rows]

    # --- blacklist ---------------------------------------------------------
    async def blacklist_remove(self, *, project_id: int | None, pattern: str, direction: str) -> None:
        def body(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM blacklist WHERE IFNULL(project_id, 0) = ? AND pattern = ? AND direction = ?",
                          (project_id or 0, pattern, direction)).rowcount == 0:
                raise NotFound(f"{pattern} is not blocked there")

        await self._transaction("blacklist_remove", body)

    # --- PIN brute-force throttle -----------------------------------------
    async def begin_pin_attempt(self, *, project_id: int, caller_key: str, now_ms: int, window_ms: int,
                                line_cap: int | None, project_cap: int, entering_cap: int,
                                entering_ms: int) -> PinAttempt:
        """Check the throttle and record the attempt, in one transaction, before a PIN prompt.

        The attempt counts as a wrong PIN from the moment it is recorded (so however many
        calls prompt at once, no more than the caps are ever evaluated) until
        ``end_pin_attempt`` says otherwise. Refused (nothing recorded) when the line
        (``line_cap``; None: no per-line cap, e.g. withheld numbers) or the project has
        reached its wrong PINs within ``window_ms``, or ``entering_cap`` calls of the
        project are at a PIN prompt now (pending attempts younger than ``entering_ms``)."""
        return await self._transaction("pin_attempt", lambda db: _begin_pin_attempt(
            db, project_id=project_id, caller_key=caller_key, now_ms=now_ms, window_ms=window_ms,
            line_cap=line_cap, project_cap=project_cap, entering_cap=entering_cap, entering_ms=entering_ms))

    async def end_pin_attempt(self, attempt_id: int, *, wrong: bool, since_ms: int) -> int:
        """The attempt's answer: a wrong PIN stays (no longer pending); an empty entry or the
        right PIN is deleted. Returns the line's wrong PINs since ``since_ms`` (0 if not wrong)."""
        def body(db: sqlite3.Connection) -> int:
            if not wrong:
                db.execute("DELETE FROM pin_failures WHERE rowid = ?", (attempt_id,))
                return 0
            db.execute("UPDATE pin_failures SET pending = 0 WHERE rowid = ?", (attempt_id,))
            row = db.execute("SELECT COUNT(*) FROM pin_failures f JOIN pin_failures me"
                             " ON me.project_id = f.project_id AND me.caller_key = f.caller_key"
                             " WHERE me.rowid = ? AND f.at_ms >= ?", (attempt_id, since_ms)).fetchone()
            return int(row[0])

        return await self._transaction("pin_attempt_end", body)

    async def pin_failures(self, *, since_ms: int, project_id: int | None = None,
                           caller_key: str | None = None) -> list[PinFailureSummary]:
        """Wrong PINs (and attempts under way) since ``since_ms`` per project and line, most first."""
        clauses: list[str] = ["at_ms >= ?"]
        params: list[Any] = [since_ms]
        if project_id is not None:
            clauses.append("project_id = ?")
            params.append(project_id)
        if caller_key is not None:
            clauses.append("caller_key = ?")
            params.append(caller_key)
        rows = await self._read(
            "SELECT project_id, caller_key, COUNT(*), MIN(at_ms), MAX(at_ms) FROM pin_failures"
            f" WHERE {' AND '.join(clauses)} GROUP BY project_id, caller_key"
            " ORDER BY COUNT(*) DESC, project_id, caller_key", params)
        return [PinFailureSummary(*r) for r in rows]

    async def clear_pin_failures(self, *, project_id: int | None = None, caller_key: str | None = None) -> int:
        """Forget wrong PINs (of a project, of a line, or all); returns how many went."""
        clauses: list[str] = []
        params: list[Any] = []
        if project_id is not None:
            clauses.append("project_id = ?")
            params.append(project_id)
        if caller_key is not None:
            clauses.append("caller_key = ?")
            params.append(caller_key)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""

        def body(db: sqlite3.Connection) -> int:
            return db.execute(f"DELETE FROM pin_failures {where}", params).rowcount

        return await self._transaction("pin_failures_clear", body)

    async def active_card_count(self, project_id: int, now_ms: int) -> int:
        """Cards whose PIN would get a caller through: not blocked, not expired, time left."""
        rows = await self._read("SELECT COUNT(*) FROM cards WHERE project_id = ? AND blocked = 0"
                                " AND balance_s > 0 AND (expires_ms IS NULL OR expires_ms > ?)",
                                (project_id, now_ms))
        return int(rows[0][0])

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

        def body(db: sqlite3.Connection) -> None:
            if not db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone():
                raise NotFound(f"no project with id {project_id}")
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                db.execute(f"UPDATE projects SET {assignments} WHERE id = ?", (*changes.values(), project_id))
            _legacy_to_routes(db, project_id, changes)
            for number in remove_numbers:
                if db.execute("DELETE FROM access_numbers WHERE number = ? AND project_id = ?",
                              (number, project_id)).rowcount == 0:
                    raise NotFound(f"{number} is not an access number of this project")
            for number in add_numbers:
                owner = db.execute("SELECT p.name FROM access_numbers a JOIN projects p ON p.id = a.project_id"
                                   " WHERE a.number = ?", (number,)).fetchone()
                if owner is not None:
                    raise AlreadyExists(f"{number} is already an access number of project {owner[0]}")
                db.execute("INSERT INTO access_numbers (number, project_id) VALUES (?, ?)", (number, project_id))
            left = db.execute("SELECT COUNT(*) FROM access_numbers WHERE project_id = ?", (project_id,)).fetchone()
            if not left or left[0] == 0:
                raise InvalidInput("a project needs at least one access number")

        await self._transaction("update_project", body)
        project = await self.project_by_id(project_id)
        assert project is not None
        return project

    # --- forwarding rules --------------------------------------------------
    async def _change_routes(self, operation: str, project_id: int,
                             body: Callable[[sqlite3.Connection], None]) -> Project:
        def run(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone() is None:
                raise NotFound(f"no project with id {project_id}")
            body(db)
            _sync_legacy_destinations(db, project_id)

        await self._transaction(operation, run)
        project = await self.project_by_id(project_id)
        assert project is not None
        return project

    async def add_route(self, project_id: int, route: Route, *, position: int | None = None) -> Project:
        """Insert a rule at ``position`` (1-based; None = last); the rules after it move down."""
        return await self._change_routes("route_add", project_id,
                                         lambda db: _insert_route(db, project_id, route, position))

    async def remove_route(self, project_id: int, position: int) -> Project:
        """Raises NotFound (no such rule), InvalidInput (the last rule cannot go)."""
        def body(db: sqlite3.Connection) -> None:
            ids = [r[0] for r in db.execute("SELECT id FROM routes WHERE project_id = ? ORDER BY position",
                                            (project_id,)).fetchall()]
            if not 1 <= position <= len(ids):
                raise NotFound(f"no rule {position} (the project has {len(ids)})")
            db.execute("DELETE FROM routes WHERE id = ?", (ids[position - 1],))
            _renumber_routes(db, project_id, ids[:position - 1] + ids[position:])

        return await self._change_routes("route_remove", project_id, body)

    async def move_route(self, project_id: int, position: int, to: int) -> Project:
        """Move rule ``position`` to ``to``. Raises NotFound."""
        def body(db: sqlite3.Connection) -> None:
            ids = [r[0] for r in db.execute("SELECT id FROM routes WHERE project_id = ? ORDER BY position",
                                            (project_id,)).fetchall()]
            if not (1 <= position <= len(ids) and 1 <= to <= len(ids)):
                raise NotFound(f"no rule {position if not 1 <= position <= len(ids) else to}"
                               f" (the project has {len(ids)})")
            moved = ids.pop(position - 1)
            ids.insert(to - 1, moved)
            _renumber_routes(db, project_id, ids)

        return await self._change_routes("route_move", project_id, body)

    async def quota_used(self, card_id: int, month: str) -> int:
        rows = await self._read("SELECT used_s FROM card_quota WHERE card_id = ? AND month = ?", (card_id, month))
        return int(rows[0][0]) if rows else 0

    async def access_number_owner(self, number: str) -> str | None:
        """The name of the project whose access number this is, if any."""
        rows = await self._read("SELECT p.name FROM access_numbers a JOIN projects p ON p.id = a.project_id"
                                " WHERE a.number = ?", (number,))
        return str(rows[0][0]) if rows else None

    # --- operator's CLI: cards --------------------------------------------
    async def set_expiry(self, card_id: int, expires_ms: int | None) -> Card:
        """Set (or, with None, remove) the moment the card expires. Raises NotFound."""
        await self._update_card("set_expiry", "UPDATE cards SET expires_ms = ? WHERE id = ?", (expires_ms, card_id),
                                card_id)
        return await self.card(card_id)

    # --- operator's CLI: blocked numbers ----------------------------------
    async def add_blocked(self, *, project_id: int | None, pattern: str, direction: str, reason: str,
                          added_by: str, now_ms: int) -> BlockedNumber:
        """Block ``pattern`` (checked by the caller), recording who added it. Raises AlreadyExists."""
        def body(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO blacklist (project_id, pattern, direction, reason, created_ms, added_by)"
                " VALUES (?,?,?,?,?,?)", (project_id, pattern, direction, reason, now_ms, added_by))
            return cur.lastrowid or 0

        try:
            entry_id = await self._transaction("blacklist_add", body)
        except AlreadyExists as exc:
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
        def body(db: sqlite3.Connection) -> tuple[int, int]:
            added = removed = 0
            if replace:
                removed = db.execute("DELETE FROM blacklist WHERE IFNULL(project_id, 0) = ?",
                                     (project_id or 0,)).rowcount
            for pattern, direction, reason, added_by in entries:
                added += db.execute(
                    "INSERT INTO blacklist (project_id, pattern, direction, reason, created_ms, added_by)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (project_id, pattern, direction, reason, now_ms, added_by)).rowcount
            return added, removed

        added, removed = await self._transaction("blacklist_import", body)
        return added, len(entries) - added, removed

    # --- operator's CLI: CDR queries --------------------------------------
    async def find_cdrs(self, *, since_ms: int | None = None, until_ms: int | None = None,
                        project_id: int | None = None, card_id: int | None = None,
                        outcomes: Sequence[str] = (), last: int | None = None, call_types: Sequence[str] = (),
                        zones: Sequence[str] = ()) -> list[Cdr]:
        """CDRs in start order, filtered; with ``last`` only the latest that many."""
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (("start_ms >= ?", since_ms), ("start_ms < ?", until_ms),
                              ("project_id = ?", project_id), ("card_id = ?", card_id)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        for column, values in (("outcome", outcomes), ("call_type", call_types), ("zone", zones)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
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
            assignments = ", ".join(f"{column} = ?" for column in changes)
            await self._transaction("account_settings", lambda db: db.execute(
                f"UPDATE account SET {assignments} WHERE id = 1", values))
        return await self.account_settings()

    async def claim_account_currency(self, currency: str) -> str:
        """Fix the account's currency if it has none yet; returns the account's currency."""
        await self._transaction("account_currency", lambda db: db.execute(
            "UPDATE account SET currency = ? WHERE id = 1 AND currency IS NULL", (currency,)))
        return (await self.account_settings()).currency or currency

    async def account_owed_cents(self, *, before_ms: int | None = None) -> int:
        """Charges (card purchases and recharges) minus payments (less their corrections),
        optionally up to a moment."""
        until = " AND l.at_ms < ?" if before_ms is not None else ""
        paid_until = " WHERE at_ms < ?" if before_ms is not None else ""
        params = (before_ms,) if before_ms is not None else ()
        charged = await self._read("SELECT IFNULL(SUM(l.amount_cents), 0) FROM ledger l"
                                   f" WHERE l.kind IN ('purchase', 'recharge'){until}", params)
        paid = await self._read(f"SELECT {_PAID_SUM} FROM payments{paid_until}", params)
        return int(charged[0][0]) - int(paid[0][0])

    async def account_lines(self, *, since_ms: int | None = None, until_ms: int | None = None) -> list[AccountLine]:
        """Charges, payments and corrections in time order, optionally within ``[since_ms, until_ms)``."""
        window = ""
        params: list[Any] = []
        if since_ms is not None:
            window += " AND at_ms >= ?"
            params.append(since_ms)
        if until_ms is not None:
            window += " AND at_ms < ?"
            params.append(until_ms)
        rows = await self._read(
            "SELECT at_ms, kind, amount_cents, card_id, project_id, seconds, reference, entered_by, entry_id,"
            " corrects FROM ("
            " SELECT l.at_ms AS at_ms, l.kind AS kind, l.amount_cents AS amount_cents, l.card_id AS card_id,"
            "  c.project_id AS project_id, l.seconds AS seconds, l.reference AS reference, '' AS entered_by,"
            "  NULL AS entry_id, NULL AS corrects, 0 AS source, l.id AS id"
            "  FROM ledger l JOIN cards c ON c.id = l.card_id WHERE l.kind IN ('purchase', 'recharge')"
            f" UNION ALL {_PAYMENT_LINES}"
            f") WHERE 1 = 1{window} ORDER BY at_ms, source, id", params)
        return [AccountLine(*r) for r in rows]

    async def add_payment(self, *, amount_cents: int, currency: str, reference: str, entered_by: str,
                          now_ms: int) -> int:
        """Returns the payment's id (what ``correct_payment`` names)."""
        if amount_cents <= 0:
            raise InvalidInput("a payment must be a positive amount")

        def body(db: sqlite3.Connection) -> int:
            return db.execute(
                "INSERT INTO payments (at_ms, amount_cents, currency, reference, entered_by) VALUES (?,?,?,?,?)",
                (now_ms, amount_cents, currency, reference, entered_by)).lastrowid or 0

        return await self._transaction("add_payment", body)

    async def correct_payment(self, *, payment_id: int, amount_cents: int, reference: str, entered_by: str,
                              now_ms: int) -> Payment:
        """Take back ``amount_cents`` of a payment: a correction row naming it, in the payment's
        currency. Under the write lock: all its corrections together never exceed it.
        Raises NotFound, InvalidInput."""
        if amount_cents <= 0:
            raise InvalidInput("a correction must be a positive amount")

        def body(db: sqlite3.Connection) -> int:
            row = db.execute(f"SELECT {_PAYMENT_COLS} FROM payments p WHERE p.id = ?", (payment_id,)).fetchone()
            payment = _payment(row) if row is not None else None
            check_correction(payment, payment_id, amount_cents)
            assert payment is not None
            return db.execute(
                "INSERT INTO payments (at_ms, amount_cents, currency, reference, entered_by, corrects)"
                " VALUES (?,?,?,?,?,?)",
                (now_ms, amount_cents, payment.currency, reference, entered_by, payment_id)).lastrowid or 0

        return await self.payment(await self._transaction("correct_payment", body))

    async def payment(self, payment_id: int) -> Payment:
        """A payment or correction by its id. Raises NotFound."""
        rows = await self._read(f"SELECT {_PAYMENT_COLS} FROM payments p WHERE p.id = ?", (payment_id,))
        if not rows:
            raise NotFound(f"no payment {payment_id}")
        return _payment(rows[0])

    async def payments(self, *, last: int = 10) -> list[Payment]:
        """The latest ``last`` payments and corrections, oldest first."""
        rows = await self._read(f"SELECT {_PAYMENT_COLS} FROM payments p ORDER BY p.id DESC LIMIT ?", (last,))
        return [_payment(r) for r in reversed(rows)]

    async def project_currencies(self) -> dict[str, list[str]]:
        """Currency -> the names of the projects priced in it."""
        out: dict[str, list[str]] = {}
        for currency, name in await self._read("SELECT currency, name FROM projects ORDER BY id"):
            out.setdefault(currency, []).append(name)
        return out

    # --- ivr db copy ----------------------------------------------------------
    async def tables(self) -> list[str]:
        """The tables in creation order (which is the order their references allow)."""
        rows = await self._read("SELECT name FROM sqlite_master WHERE type = 'table'"
                                " AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
        return [r[0] for r in rows]

    async def table_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if table not in await self.tables():
            raise NotFound(f"no table {table}")

        def read() -> tuple[list[str], list[tuple[Any, ...]]]:
            cur = self._db().execute(f'SELECT * FROM "{table}" ORDER BY rowid')
            return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]

        return await self._on_worker(read, "copy")

    async def load_tables(self, data: list[tuple[str, list[str], list[tuple[Any, ...]]]]) -> None:
        """Replace the given tables' rows (a new database's defaults) in one transaction."""
        def body(db: sqlite3.Connection) -> None:
            for table, _, _ in reversed(data):
                db.execute(f'DELETE FROM "{table}"')
            for table, columns, rows in data:
                cols = ", ".join(f'"{c}"' for c in columns)
                db.executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" for _ in columns)})', rows)

        await self._transaction("copy", body)

    async def card_balances(self) -> dict[int, tuple[int, int]]:
        """Card id -> (balance, sum of its ledger)."""
        rows = await self._read("SELECT c.id, c.balance_s, COALESCE(SUM(l.seconds), 0) FROM cards c"
                                " LEFT JOIN ledger l ON l.card_id = c.id GROUP BY c.id")
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


if TYPE_CHECKING:  # mypy proves SqliteStore keeps both contracts
    from .base import OperatorStore

    _keeps_contract: OperatorStore = SqliteStore(":memory:")
