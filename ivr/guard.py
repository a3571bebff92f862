"""A failing store costs a call at most one short budget, and loses nothing.

``GuardedStore`` sits between the call path and any store backend (the call path's
contract, ``rating.store.base.CallStore``): it counts every ``StoreUnavailable`` in
``ivr_store_failures_total{operation}`` and, once a write failed, refuses further
writes at once for ``cooldown_s`` (then lets one through as a trial, the others still
refused until it answers). So while another process holds SQLite's write lock or the
disk is full, the first call waits one budget (``store_budget_ms``, SQLite's busy
timeout) and every later one fails closed at once — "service unavailable" through
``IVR_RESULT=error`` — instead of each waiting the budget two or three times over.

``Recorder`` writes a call's settlement and CDR, or journals them (``ivr.journal``)
when the store does not take them, and replays the journal in the background once
the store answers again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rating.billing import BillingRule
from rating.errors import RatingError, StoreUnavailable
from rating.models import (
    AccountSettings,
    BindResult,
    BoundReservation,
    Card,
    Cdr,
    Grant,
    HoldCall,
    HoldSettlement,
    PinAttempt,
    Routing,
)
from rating.store.base import CallStore
from rating.zones import QuotaPeriod

from ._tasks import cancel_and_wait
from .journal import Entry, Journal, JournalBusy, ReplayResult, replay
from .metrics import Metrics

__all__ = ["GuardedStore", "Recorder"]

T = TypeVar("T")


class GuardedStore:
    def __init__(self, inner: CallStore, *, metrics: Metrics, cooldown_s: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.metrics = metrics
        self.cooldown_s = cooldown_s
        self._monotonic = monotonic
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._trial = False
        self.recovered = asyncio.Event()   # set when a write succeeds after failures

    @property
    def failing(self) -> bool:
        return self._failing_since is not None

    def _failed(self, operation: str) -> None:
        self.metrics.store_failures.labels(operation).inc()
        now = self._monotonic()
        if self._failing_since is None:
            self._failing_since = now
        self._retry_at = now + self.cooldown_s

    async def _write(self, operation: str, make: Callable[[], Awaitable[T]]) -> T:
        trial = False
        if self._failing_since is not None:
            if self._trial or self._monotonic() < self._retry_at:
                down = self._monotonic() - self._failing_since
                raise StoreUnavailable(f"{operation}: the store is failing (for {down:.1f} s); not tried")
            self._trial = trial = True
        try:
            result = await make()
        except StoreUnavailable:
            self._failed(operation)
            raise
        except RatingError:  # a refusal (card in use, …) is an answer: the store works
            self._answered()
            raise
        finally:
            if trial:
                self._trial = False
        self._answered()
        return result

    def _answered(self) -> None:
        if self._failing_since is not None:
            self._failing_since = None
            self.recovered.set()

    async def _read(self, operation: str, make: Callable[[], Awaitable[T]]) -> T:
        try:
            return await make()
        except StoreUnavailable:
            self._failed(operation)
            raise

    # --- CallStore ---------------------------------------------------------
    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def routing(self, *, max_age_s: float = 0.0) -> Routing:
        return await self._read("routing", lambda: self.inner.routing(max_age_s=max_age_s))

    async def card_by_pin_hash(self, project_id: int, pin_hash: str) -> Card | None:
        return await self._read("card_by_pin_hash", lambda: self.inner.card_by_pin_hash(project_id, pin_hash))

    async def bind(self, *, project_id: int, caller: str, card_id: int, now_ms: int, source: str,
                   max_bound: int, evict: bool = True, actor: str = "") -> BindResult:
        return await self._write("bind", lambda: self.inner.bind(
            project_id=project_id, caller=caller, card_id=card_id, now_ms=now_ms, source=source,
            max_bound=max_bound, evict=evict, actor=actor))

    async def activate(self, card_id: int, now_ms: int) -> None:
        await self._write("activate", lambda: self.inner.activate(card_id, now_ms))

    async def reserve(self, *, card_id: int, uniqueid: str, rule: BillingRule, max_calls: int,
                      hold_s: int, now_ms: int, quota: QuotaPeriod | None = None,
                      call: HoldCall | None = None) -> Grant:
        return await self._write("reserve", lambda: self.inner.reserve(
            card_id=card_id, uniqueid=uniqueid, rule=rule, max_calls=max_calls, hold_s=hold_s, now_ms=now_ms,
            quota=quota, call=call))

    async def reserve_bound(self, *, project_id: int, caller: str, uniqueid: str, rule: BillingRule,
                            max_calls: int, hold_s: int, now_ms: int,
                            quota: QuotaPeriod | None = None,
                            call: HoldCall | None = None) -> BoundReservation | None:
        return await self._write("reserve", lambda: self.inner.reserve_bound(
            project_id=project_id, caller=caller, uniqueid=uniqueid, rule=rule, max_calls=max_calls,
            hold_s=hold_s, now_ms=now_ms, quota=quota, call=call))

    async def settle(self, grant: Grant, *, debit_s: int, uniqueid: str, now_ms: int,
                     factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int:
        return await self._write("settle", lambda: self.inner.settle(
            grant, debit_s=debit_s, uniqueid=uniqueid, now_ms=now_ms, factor_pm=factor_pm, quota=quota))

    async def settle_and_record(self, grant: Grant, *, debit_s: int, cdr: Cdr, now_ms: int,
                                factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int:
        return await self._write("settle_and_record", lambda: self.inner.settle_and_record(
            grant, debit_s=debit_s, cdr=cdr, now_ms=now_ms, factor_pm=factor_pm, quota=quota))

    async def settle_hold(self, hold_id: int, *, uniqueid: str, talk_ms: int, cdr: Cdr, now_ms: int,
                          limit_s: int | None = None, factor_pm: int = 1000,
                          quota: QuotaPeriod | None = None) -> HoldSettlement:
        return await self._write("settle_hold", lambda: self.inner.settle_hold(
            hold_id, uniqueid=uniqueid, talk_ms=talk_ms, cdr=cdr, now_ms=now_ms, limit_s=limit_s,
            factor_pm=factor_pm, quota=quota))

    async def write_cdr(self, cdr: Cdr) -> None:
        await self._write("write_cdr", lambda: self.inner.write_cdr(cdr))

    async def settle_and_record_once(self, grant: Grant | None, *, debit_s: int, cdr: Cdr, now_ms: int,
                                     factor_pm: int = 1000, quota: QuotaPeriod | None = None) -> int | None:
        return await self._write("journal_replay", lambda: self.inner.settle_and_record_once(
            grant, debit_s=debit_s, cdr=cdr, now_ms=now_ms, factor_pm=factor_pm, quota=quota))

    async def begin_pin_attempt(self, *, project_id: int, caller_key: str, now_ms: int, window_ms: int,
                                line_cap: int | None, project_cap: int, entering_cap: int,
                                entering_ms: int) -> PinAttempt:
        return await self._write("pin_attempt", lambda: self.inner.begin_pin_attempt(
            project_id=project_id, caller_key=caller_key, now_ms=now_ms, window_ms=window_ms, line_cap=line_cap,
            project_cap=project_cap, entering_cap=entering_cap, entering_ms=entering_ms))

    async def end_pin_attempt(self, attempt_id: int, *, wrong: bool, since_ms: int) -> int:
        return await self._write("pin_attempt_end", lambda: self.inner.end_pin_attempt(
            attempt_id, wrong=wrong, since_ms=since_ms))

    async def account_settings(self) -> AccountSettings:
        return await self._read("account", self.inner.account_settings)

    async def account_owed_cents(self, *, before_ms: int | None = None) -> int:
        return await self._read("account", lambda: self.inner.account_owed_cents(before_ms=before_ms))


class Recorder:
    """Settle and record a call, or journal it; replay the journal when the store is back."""

    def __init__(self, store: GuardedStore, journal: Journal, *, metrics: Metrics, log: Any,
                 now_ms: Callable[[], int], retry_s: float = 1.0) -> None:
        self.store = store
        self.journal = journal
        self.metrics = metrics
        self.log = log
        self.now_ms = now_ms
        self.retry_s = retry_s
        self.backlog = 0
        self.oldest_ms: int | None = None
        self._unwritten: list[Entry] = []  # not even journalled (yet)
        self._wake = asyncio.Event()
        self._damage_reported: set[tuple[int, str]] = set()
        self._task: asyncio.Task[None] | None = None
        metrics.journal_entries.set_function(lambda: self.backlog + len(self._unwritten))
        metrics.journal_oldest_age.set_function(self._oldest_age_s)

    def _oldest_age_s(self) -> float:
        oldest = [ms for ms in (self.oldest_ms, *(u.at_ms for u in self._unwritten)) if ms is not None]
        return max(0.0, (self.now_ms() - min(oldest)) / 1000) if oldest else 0.0

    async def journal_call(self, grant: Grant | None, *, debit_s: int, cdr: Cdr, now_ms: int,
                           factor_pm: int, quota: QuotaPeriod | None, reason: str) -> None:
        """Keep a call the store did not take; never raises (a journal that cannot be
        written either keeps the call in memory, logged in full, and retries)."""
        entry = Entry.new(grant, debit_s=debit_s, cdr=cdr, at_ms=now_ms, factor_pm=factor_pm, quota=quota)
        try:
            await asyncio.to_thread(self.journal.append, entry)
        except OSError as exc:
            self._unwritten.append(entry)
            self.metrics.journal_write_failures.inc()
            self.log.error("journal_write_failed", error=str(exc), reason=reason, entry=entry.record())
        else:
            self.backlog += 1
            self.oldest_ms = now_ms if self.oldest_ms is None else min(self.oldest_ms, now_ms)
            self.log.warning("call_journalled", reason=reason, entry=entry.id, debit_s=debit_s,
                             hold=grant.reservation_id if grant else None, path=str(self.journal.path))
        self._wake.set()

    # --- the background replay -------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self.replay_once()  # a last try before the store closes; what is left stays
        except Exception:
            self.log.exception("journal_replay_failed")
        for entry in self._unwritten:  # neither store nor journal took them
            self.log.error("call_not_kept", entry=entry.record())

    async def _run(self) -> None:
        await asyncio.to_thread(self.journal.ensure_ballast)
        while True:
            try:
                await self.replay_once()
            except Exception:
                self.log.exception("journal_replay_failed")
            self._wake.clear()
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self.store.recovered.wait())]
            try:
                await asyncio.wait(waits, timeout=self.retry_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            self.store.recovered.clear()

    async def replay_once(self) -> ReplayResult | None:
        """Write what waits (in memory, then the journal) if the store takes it; None when
        there was nothing to do or another process is replaying."""
        while self._unwritten:
            entry = self._unwritten[0]
            try:
                await entry.write_to(self.store)
            except StoreUnavailable:
                try:
                    await asyncio.to_thread(self.journal.append, entry)
                except OSError:
                    return None
            self._unwritten.pop(0)
        exists = await asyncio.to_thread(self.journal.path.exists)
        if not exists:
            self.backlog, self.oldest_ms = 0, None
            return None
        try:
            result = await replay(self.journal, self.store, offload=asyncio.to_thread, now_ms=self.now_ms)
        except JournalBusy:
            return None
        for entry, debited in result.written:
            if debited is not None:
                self.metrics.debited_seconds.inc(debited)
            if entry.grant is not None and entry.debit_s and debited == 0 and entry.quota is None:
                # the hold was released (it outlived its lifetime while the store failed)
                self.log.warning("journal_hold_expired", entry=entry.id, uniqueid=entry.cdr.uniqueid,
                                 hold=entry.grant.reservation_id, debit_s=entry.debit_s)
            self.metrics.journal_replayed.inc()
            self.log.info("journal_entry_replayed", entry=entry.id, uniqueid=entry.cdr.uniqueid,
                          hold=entry.grant.reservation_id if entry.grant else None,
                          debit_s=entry.debit_s, debited_s=debited, already_written=debited is None)
        for entry, error in result.failed:
            self.log.error("journal_entry_refused", entry=entry.id, uniqueid=entry.cdr.uniqueid, error=error)
        for damage in result.damaged:
            if (damage.line, damage.reason) not in self._damage_reported:  # once, not every retry
                self._damage_reported.add((damage.line, damage.reason))
                self.log.warning("journal_line_damaged", line=damage.line, reason=damage.reason, torn=damage.torn)
        contents = await asyncio.to_thread(self.journal.read)
        self.backlog, self.oldest_ms = len(contents.pending), contents.oldest_ms
        return result
