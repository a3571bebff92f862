"""The operator's account: charges (card purchases, recharges), payments, info and lock limits."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rating.billing import format_money
from rating.errors import InvalidInput
from rating.models import AccountLine, Payment, Project
from rating.store.base import OperatorStore

from ._common import AccountLocked, CurrencyMismatch
from .projects import _check_account_currency


# --- the operator's account ---------------------------------------------------
class AccountLevel(enum.StrEnum):
    OK = "ok"
    INFO = "info"          # owing more than the info limit: warn
    LOCKED = "locked"      # owing more than the lock limit: no purchases, no recharges


@dataclass(frozen=True)
class AccountState:
    currency: str | None
    owed_cents: int             # negative: the operator has paid in advance
    info_limit_cents: int
    lock_limit_cents: int
    suspend_calls: bool         # the operator's choice: when locked, new calls are refused

    @property
    def level(self) -> AccountLevel:
        if self.owed_cents > self.lock_limit_cents:
            return AccountLevel.LOCKED
        if self.owed_cents > self.info_limit_cents:
            return AccountLevel.INFO
        return AccountLevel.OK

    @property
    def locked(self) -> bool:
        return self.level is AccountLevel.LOCKED

    @property
    def calls_suspended(self) -> bool:
        return self.suspend_calls and self.locked

    def money(self, cents: int) -> str:
        return format_money(cents, self.currency or "")


async def account_state(store: OperatorStore) -> AccountState:
    """The account now: owed amount, limits, level. For the engine's log event and the CLI."""
    settings = await store.account_settings()
    return AccountState(currency=settings.currency, owed_cents=await store.account_owed_cents(),
                        info_limit_cents=settings.info_limit_cents,
                        lock_limit_cents=settings.lock_limit_cents, suspend_calls=settings.suspend_calls)


async def calls_suspended(store: OperatorStore) -> bool:
    """True when new calls must hear "service suspended": the account is locked and the
    operator chose ``ivr account limits --suspend-calls``."""
    return (await account_state(store)).calls_suspended


async def ensure_purchases_allowed(store: OperatorStore, project: Project) -> AccountState:
    """Raises CurrencyMismatch or AccountLocked before a card purchase or recharge."""
    await _check_account_currency(store, project.currency, what=f"project {project.name}")
    state = await account_state(store)
    if state.locked:
        raise AccountLocked(
            f"the account owes {state.money(state.owed_cents)}, more than its lock limit of"
            f" {state.money(state.lock_limit_cents)}: no new cards or recharges until a payment"
            " (ivr account pay AMOUNT)")
    return state


@dataclass(frozen=True)
class Paid:
    entry: Payment          # the payment or the correction just recorded
    state: AccountState     # the account after it


async def pay(store: OperatorStore, *, amount_cents: int, reference: str, by: str, now_ms: int) -> Paid:
    """Record a payment in the account's currency. Raises InvalidInput."""
    if amount_cents <= 0:
        raise InvalidInput("a payment must be more than 0")
    currency = (await store.account_settings()).currency
    if currency is None:
        raise InvalidInput("the account has no currency yet: create a project first")
    payment_id = await store.add_payment(amount_cents=amount_cents, currency=currency, reference=reference,
                                         entered_by=by, now_ms=now_ms)
    return Paid(entry=await store.payment(payment_id), state=await account_state(store))


def check_payment_id(text: str) -> int:
    """A payment's id as the statement shows it (``7`` or ``#7``). Raises InvalidInput."""
    digits = text.strip().removeprefix("#")
    if not digits.isascii() or not digits.isdigit() or len(digits.lstrip("0")) > 18:
        raise InvalidInput(f"payment id {text!r} is not a number (the statement shows it, e.g. #7)")
    return int(digits)


async def correct(store: OperatorStore, *, payment_id: int, amount_cents: int | None, reference: str, by: str,
                  now_ms: int) -> Paid:
    """Take back all (``amount_cents`` None: what is left of it) or part of a payment
    entered wrong: a correction entry naming it, never an edit. Raises NotFound, InvalidInput."""
    if amount_cents is None:
        payment = await store.payment(payment_id)
        if payment.corrects is None and payment.left_cents == 0:
            raise InvalidInput(f"payment {payment_id} ({format_money(payment.amount_cents, payment.currency)})"
                               " is corrected in full already")
        # A correction's own id: the store refuses it, naming the payment to correct instead.
        amount_cents = payment.left_cents if payment.corrects is None else payment.amount_cents
    if amount_cents <= 0:
        raise InvalidInput("a correction must be more than 0")
    entry = await store.correct_payment(payment_id=payment_id, amount_cents=amount_cents, reference=reference,
                                        entered_by=by, now_ms=now_ms)
    return Paid(entry=entry, state=await account_state(store))


async def set_limits(store: OperatorStore, *, info_cents: int | None = None, lock_cents: int | None = None,
                     suspend_calls: bool | None = None) -> AccountState:
    """Change only the given limits. Raises InvalidInput (the info limit above the lock limit)."""
    current = await store.account_settings()
    info = current.info_limit_cents if info_cents is None else info_cents
    lock = current.lock_limit_cents if lock_cents is None else lock_cents
    if info > lock:
        raise InvalidInput(f"the info limit ({format_money(info, current.currency or '').strip()}) must not be"
                           f" above the lock limit ({format_money(lock, current.currency or '').strip()})")
    changes = {k: v for k, v in (("info_limit_cents", info_cents), ("lock_limit_cents", lock_cents),
                                 ("suspend_calls", suspend_calls)) if v is not None}
    await store.update_account_settings(changes)
    return await account_state(store)


@dataclass(frozen=True)
class StatementLine:
    line: AccountLine
    balance_cents: int      # owed after this line


@dataclass(frozen=True)
class Statement:
    currency: str | None
    opening_cents: int
    lines: list[StatementLine]

    @property
    def closing_cents(self) -> int:
        return self.lines[-1].balance_cents if self.lines else self.opening_cents


async def statement(store: OperatorStore, *, since_ms: int | None = None, until_ms: int | None = None) -> Statement:
    """The account's lines in a period with the running owed amount. Raises CurrencyMismatch
    when projects of several currencies were billed (a database from before the account)."""
    currency = (await store.account_settings()).currency
    others = sorted(c for c in await store.project_currencies() if c != currency)
    if others:
        raise CurrencyMismatch(f"projects priced in {', '.join(others)} were billed to an account kept in"
                               f" {currency}; one account has one currency")
    opening = await store.account_owed_cents(before_ms=since_ms) if since_ms is not None else 0
    balance, lines = opening, []
    for line in await store.account_lines(since_ms=since_ms, until_ms=until_ms):
        balance += line.amount_cents
        lines.append(StatementLine(line, balance))
    return Statement(currency=currency, opening_cents=opening, lines=lines)
