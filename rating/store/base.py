"""What the call path needs of a store: the contract every backend keeps.

``SqliteStore`` (``sqlite.py``) is the embedded default. A PostgreSQL backend for
several engines behind several Asterisk boxes implements the same methods with the
same guarantees: ``reserve`` is one conditional update (no overdraft whatever the
concurrency), ``settle`` is idempotent and never debits more than was reserved,
errors are ``rating.errors`` only, times are integer milliseconds.
The operator's CLI uses more of ``SqliteStore`` than this.
"""

from __future__ import annotations

from typing import Protocol

from ..billing import BillingRule
from ..models import AccountSettings, BoundReservation, Card, Cdr, Grant, Routing
from ..zones import QuotaPeriod

__all__ = ["CallStore"]


class CallStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def routing(self, *, max_age_s: float = 0.0) -> Routing:
        """Projects by access number and blocked numbers; a new snapshot after a change."""

    async def card_by_pin_hash(self, project_id: int, pin_hash: str) -> Card | None: ...
    async def bind(self, *, project_id: int, caller: str, card_id: int, now_ms: int, source: str,
                   max_bound: int) -> None: ...
    async def activate(self, card_id: int, now_ms: int) -> None: ...

    async def reserve(self, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int,
                      hold_s: int, now_ms: int, quota: QuotaPeriod | None = None) -> Grant:
        """Raises NotFound, CardBlocked, CardExpired, CardInUse, InsufficientBalance."""

    async def reserve_bound(self, *, project_id: int, caller: str, uniqueid: str, rule: BillingRule,
                            max_calls: int, hold_s: int, now_ms: int,
                            quota: QuotaPeriod | None = None) -> BoundReservation | None:
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

    async def record_pin_failure(self, project_id: int, caller_key: str, now_ms: int) -> None: ...
    async def pin_failures_since(self, project_id: int, caller_key: str, since_ms: int) -> tuple[int, int]: ...

    async def account_settings(self) -> AccountSettings: ...
    async def account_owed_cents(self, *, before_ms: int | None = None) -> int: ...
