"""The store contract every backend keeps: what the call path needs (``CallStore``)
and what operators need on top (``OperatorStore``).

``SqliteStore`` (``sqlite.py``) is the embedded default, ``PostgresStore``
(``postgres.py``) the store shared by several engines. Both keep the same
guarantees: ``reserve`` is one conditional update in one short transaction (no
overdraft whatever the concurrency, across engines too), ``settle`` is idempotent
and never debits more than was reserved — the decisions themselves are the pure
functions of ``rating.holds`` — errors are ``rating.errors`` only (no driver error
leaves ``rating/store/``), times are integer milliseconds.
``rating.store.open_store`` picks the backend from the ``database`` setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..billing import BillingRule
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
from ..zones import QuotaPeriod

__all__ = ["CallStore", "FailureObserver", "OperatorStore", "PoolStats", "StoreObserver"]

StoreObserver = Callable[[str, float], None]  # (operation, seconds): a transaction done
FailureObserver = Callable[[str], None]       # (operation): it failed with StoreUnavailable


@dataclass(frozen=True)
class PoolStats:
    """A connection pool now: connections open and idle among them, the most it opens,
    connections opened since start (each reconnect is one more) and operations cut at
    their budget (no answer in time), both since start."""

    open: int
    idle: int
    max: int
    opened: int
    overruns: int


class CallStore(Protocol):
    """The call path: routing, PIN lookup, binding, holds, settlement, CDRs."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def routing(self, *, max_age_s: float = 0.0) -> Routing:
        """Projects by access number and blocked numbers; a new snapshot after a change
        (made through any engine or the CLI) at most ``max_age_s`` late."""

    async def card_by_pin_hash(self, project_id: int, pin_hash: str) -> Card | None: ...
    async def bind(self, *, project_id: int, caller: str, card_id: int, now_ms: int, source: str,
                   max_bound: int, evict: bool = True, actor: str = "") -> BindResult:
        """Bind (history kept); above ``max_bound`` lines: evict the oldest, or refuse.
        Raises NotFound for an unknown card."""
    async def activate(self, card_id: int, now_ms: int) -> None: ...

    async def reserve(self, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int,
                      hold_s: int, now_ms: int, quota: QuotaPeriod | None = None,
                      call: HoldCall | None = None) -> Grant:
        """Raises NotFound, CardBlocked, CardExpired, CardInUse, InsufficientBalance."""

    async def reserve_bound(self, *, project_id: int, caller: str, uniqueid: str, rule: BillingRule,
                            max_calls: int, hold_s: int, now_ms: int,
                            quota: QuotaPeriod | None = None,
                            call: HoldCall | None = None) -> BoundReservation | None:
        """The bound line's card and a hold on it in one step; None when not bound."""

    async def settle(self, grant: Grant, *, debit_s: int, uniqueid: str, now_ms: int,
                     factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int:
        """Debits ``rating.zones.charge(debit_s, factor_pm, quota left)``, capped at the hold;
        the quota left is read and used in the same transaction (never twice)."""

    async def settle_and_record(self, grant: Grant, *, debit_s: int, cdr: Cdr, now_ms: int,
                                factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int: ...
    async def write_cdr(self, cdr: Cdr) -> None: ...
    async def settle_and_record_once(self, grant: Grant | None, *, debit_s: int, cdr: Cdr, now_ms: int,
                                     factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int | None:
        """A journal replay: exactly once however often it runs (None: it was written before)."""
    async def settle_hold(self, hold_id: int, *, uniqueid: str, talk_ms: int, cdr: Cdr, now_ms: int,
                          limit_s: int | None = None, factor_pm: int = 1000,
                          quota: QuotaPeriod | None = None) -> HoldSettlement:
        """Settle a hold by its id, from any engine (the settle route, reconciliation):
        idempotent — not open, unknown or another call's: nothing changes; otherwise debit
        once and write the call's one CDR (see SqliteStore.settle_hold)."""

    async def begin_pin_attempt(self, *, project_id: int, caller_key: str, now_ms: int, window_ms: int,
                                line_cap: int | None, project_cap: int, entering_cap: int,
                                entering_ms: int) -> PinAttempt:
        """Check the throttle and record the attempt atomically (one transaction)."""

    async def end_pin_attempt(self, attempt_id: int, *, wrong: bool, since_ms: int) -> int:
        """Keep a wrong PIN, drop an empty or right one; the line's wrong PINs since then."""

    async def account_settings(self) -> AccountSettings: ...
    async def account_owed_cents(self, *, before_ms: int | None = None) -> int: ...


class OperatorStore(CallStore, Protocol):
    """The operator's CLI: projects, cards, bindings, blocked numbers, CDR reports, the account,
    the schema (``ivr db``)."""

    schema_found: int | None   # the schema version ``open`` found (before any migration)

    async def schema_version(self) -> int: ...
    def pool_stats(self) -> PoolStats | None:
        """The connection pool (PostgreSQL), None for a store without one (SQLite)."""

    # ivr db copy (rating.store._copy): tables in creation order, their rows, a bulk load
    async def tables(self) -> list[str]: ...
    async def table_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]: ...
    async def load_tables(self, data: list[tuple[str, list[str], list[tuple[Any, ...]]]]) -> None: ...
    async def card_balances(self) -> dict[int, tuple[int, int]]: ...

    async def create_project(self, *, name: str, numbers: Sequence[str], service: str, fallback: str | None,
                             ring_timeout_s: int, language: str, region: str, price_per_minute_cents: int,
                             currency: str, rule: BillingRule, warning_s: int, pin_length: int,
                             max_bound_numbers: int, max_simultaneous_calls: int, card_validity_days: int | None,
                             now_ms: int) -> Project: ...
    async def update_project(self, project_id: int, *, changes: Mapping[str, Any], add_numbers: Sequence[str] = (),
                             remove_numbers: Sequence[str] = ()) -> Project: ...
    async def project_by_name(self, name: str) -> Project | None: ...
    async def project_by_id(self, project_id: int) -> Project | None: ...
    async def projects(self) -> list[Project]: ...
    async def access_number_owner(self, number: str) -> str | None: ...
    async def project_currencies(self) -> dict[str, list[str]]: ...

    async def create_card(self, *, project_id: int, note: str, pin_hash: str, seconds: int, price_cents: int,
                          now_ms: int, expires_ms: int | None) -> Card: ...
    async def create_cards(self, *, project_id: int, note: str, count: int, pin_hashes: Iterable[str],
                           seconds: int, price_cents: int, now_ms: int, expires_ms: int | None,
                           before_commit: Callable[[Sequence[tuple[Card, str]]], None] | None = None,
                           ) -> list[tuple[Card, str]]:
        """Buy ``count`` cards in one transaction: all of them, each with its purchase
        ledger row, or none. Each card takes the next of ``pin_hashes`` not taken in the
        project; ``before_commit`` (the PIN file) runs before COMMIT, and if it raises
        nothing is bought. Returns (card, its PIN hash) in order. Raises AlreadyExists
        when ``pin_hashes`` runs out first (nothing is bought)."""
    async def card_count(self, project_id: int) -> int:
        """Every card of the project, whatever its state (each holds its PIN)."""
    async def card(self, card_id: int) -> Card: ...
    async def card_for_caller(self, project_id: int, caller: str) -> Card | None: ...
    async def cards(self, project_id: int | None = None) -> list[Card]: ...
    async def set_pin_hash(self, card_id: int, pin_hash: str) -> None: ...
    async def set_blocked(self, card_id: int, blocked: bool) -> None: ...
    async def open_holds(self, *, card_id: int | None = None) -> list[OpenHold]:
        """Holds not settled or released yet, every engine's (reconciliation, ivr calls)."""
    async def set_expiry(self, card_id: int, expires_ms: int | None) -> Card: ...
    async def recharge(self, card_id: int, seconds: int, price_cents: int, now_ms: int) -> Card: ...
    async def adjust(self, card_id: int, seconds: int, reason: str, now_ms: int) -> Card: ...
    async def unbind(self, project_id: int, caller: str, *, actor: str = "", now_ms: int | None = None) -> None: ...
    async def bindings(self, card_id: int) -> list[Binding]: ...
    async def binding_history(self, card_id: int) -> list[BindingEvent]: ...
    async def pin_failures(self, *, since_ms: int, project_id: int | None = None,
                           caller_key: str | None = None) -> list[PinFailureSummary]: ...
    async def clear_pin_failures(self, *, project_id: int | None = None, caller_key: str | None = None) -> int: ...
    async def active_card_count(self, project_id: int, now_ms: int) -> int: ...
    async def ledger(self, card_id: int) -> list[LedgerEntry]: ...

    async def add_route(self, project_id: int, route: Route, *, position: int | None = None) -> Project: ...
    async def remove_route(self, project_id: int, position: int) -> Project: ...
    async def move_route(self, project_id: int, position: int, to: int) -> Project: ...
    async def quota_used(self, card_id: int, month: str) -> int: ...

    async def cdrs(self, *, card_id: int | None = None, limit: int = 1000) -> list[Cdr]: ...
    async def find_cdrs(self, *, since_ms: int | None = None, until_ms: int | None = None,
                        project_id: int | None = None, card_id: int | None = None, outcomes: Sequence[str] = (),
                        last: int | None = None, call_types: Sequence[str] = (),
                        zones: Sequence[str] = ()) -> list[Cdr]: ...

    async def add_blocked(self, *, project_id: int | None, pattern: str, direction: str, reason: str,
                          added_by: str, now_ms: int) -> BlockedNumber: ...
    async def blocked(self, *, project_id: int | None = None, include_global: bool = True,
                      only_global: bool = False, direction: str | None = None) -> list[BlockedNumber]: ...
    async def blacklist_remove(self, *, project_id: int | None, pattern: str, direction: str) -> None: ...
    async def import_blocked(self, *, project_id: int | None, entries: Sequence[tuple[str, str, str, str]],
                             replace: bool, now_ms: int) -> tuple[int, int, int]: ...

    async def update_account_settings(self, changes: Mapping[str, Any]) -> AccountSettings: ...
    async def claim_account_currency(self, currency: str) -> str: ...
    async def account_lines(self, *, since_ms: int | None = None,
                            until_ms: int | None = None) -> list[AccountLine]: ...
    async def add_payment(self, *, amount_cents: int, currency: str, reference: str, entered_by: str,
                          now_ms: int) -> int:
        """Returns the payment's id."""
    async def correct_payment(self, *, payment_id: int, amount_cents: int, reference: str, entered_by: str,
                              now_ms: int) -> Payment:
        """A correction taking back ``amount_cents`` of the payment ``payment_id`` (its own row,
        in one transaction that sees every earlier correction: together they never exceed the
        payment). Returns the correction. Raises NotFound, InvalidInput."""
    async def payment(self, payment_id: int) -> Payment:
        """Raises NotFound."""
    async def payments(self, *, last: int = 10) -> list[Payment]:
        """The latest payments and corrections, oldest first."""
