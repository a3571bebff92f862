"""``ivr db copy``: every row of every table from one store into another, empty, one
(SQLite → PostgreSQL to move an operator to several engines), in one transaction on
the target, then checked: the same rows per table, and every card's balance equal on
both sides and equal to the sum of its ledger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InvalidInput, StoreUnavailable

__all__ = ["CopyReport", "RowStore", "copy_store"]


class RowStore(Protocol):
    """What copying needs of a backend: its tables in creation order, their rows, a bulk load."""

    async def tables(self) -> list[str]: ...
    async def table_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]: ...
    async def load_tables(self, data: list[tuple[str, list[str], list[tuple[Any, ...]]]]) -> None: ...
    async def card_balances(self) -> dict[int, tuple[int, int]]: ...


@dataclass(frozen=True)
class CopyReport:
    rows: dict[str, int]        # table -> rows copied
    cards: int
    balance_s: int              # the sum of every card's balance, on both sides


async def copy_store(source: RowStore, target: RowStore) -> CopyReport:
    """Raises InvalidInput (the target has cards or projects, or lacks a table),
    StoreUnavailable (the check after the copy failed: nothing is trusted)."""
    tables = await source.tables()
    missing = set(tables) - set(await target.tables())
    if missing:
        raise InvalidInput(f"the target has no table {', '.join(sorted(missing))}: is its schema older?")
    for table in ("projects", "cards"):
        if (await target.table_rows(table))[1]:
            raise InvalidInput(f"the target database already has {table}: copy only into a new, empty one")
    data = [(t, *await source.table_rows(t)) for t in tables]
    await target.load_tables(data)
    for table, _, rows in data:
        copied = len((await target.table_rows(table))[1])
        if copied != len(rows):
            raise StoreUnavailable(f"copy check failed: {table} has {copied} rows on the target, {len(rows)} here")
    before, after = await source.card_balances(), await target.card_balances()
    if before != after:
        raise StoreUnavailable("copy check failed: card balances differ between source and target")
    wrong = [card for card, (balance, ledger) in after.items() if balance != ledger]
    if wrong:
        raise StoreUnavailable(f"copy check failed: cards {wrong[:5]} do not equal the sum of their ledger")
    return CopyReport(rows={t: len(r) for t, _, r in data}, cards=len(after),
                      balance_s=sum(b for b, _ in after.values()))
