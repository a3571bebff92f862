"""Store throughput, in-process against ``SqliteStore`` on its own SQLite file:
reserve + settle pairs (what every answered call costs the store) on one card,
and spread over many cards by concurrent tasks, as concurrent calls do."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path
from typing import Any

from ivr import operations as ops
from ivr.clock import SystemClock
from rating.billing import BillingRule
from rating.store import open_store
from rating.store.base import OperatorStore

__all__ = ["store_throughput"]


async def _pairs(store: OperatorStore, cards: list[int], n: int, tasks: int, rule: BillingRule) -> dict[str, Any]:
    """``n`` reserve+settle pairs by ``tasks`` concurrent tasks; each task owns its cards
    (max_simultaneous_calls is 1: a card takes one call at a time)."""
    now = SystemClock().now_ms
    counter = itertools.count()
    seq = itertools.count()

    async def worker(mine: list[int]) -> None:
        rng = random.Random(len(mine))
        while next(counter) < n:
            card = mine[rng.randrange(len(mine))] if len(mine) > 1 else mine[0]
            uid = f"bench.{next(seq)}"
            grant = await store.reserve(card_id=card, uniqueid=uid, rule=rule, max_calls=1, hold_s=660,
                                        now_ms=now())
            await store.settle(grant, debit_s=1, uniqueid=uid, now_ms=now())

    started = time.perf_counter()
    await asyncio.gather(*(worker(cards[i::tasks]) for i in range(tasks)))
    wall = time.perf_counter() - started
    return {"pairs": n, "tasks": tasks, "cards": len(cards), "seconds": wall,
            "pairs_per_s": n / wall, "ops_per_s": 2 * n / wall}


async def store_throughput(database: Path | str, *, cards: int, pairs: int, tasks: int = 50) -> dict[str, Any]:
    """Create ``cards`` cards, then time reserve+settle pairs: on one card (one task:
    a card takes one call at a time), and over all the cards (one task, and ``tasks``
    concurrent tasks)."""
    now = SystemClock().now_ms
    secret = b"b" * 32
    store = open_store(str(database))
    await store.open()
    try:
        project = await ops.create_project(store, name="store-bench", numbers=["+41441234500"],
                                           service="Local/100@prepaid-service/n", region="CH",
                                           price_per_minute_cents=0, currency="CHF", now_ms=now())
        started = time.perf_counter()
        ids = [new.card.id for new in await ops.buy_cards(store, secret, project=project, minutes=600,
                                                          note="store bench", count=cards, now_ms=now())]
        created = time.perf_counter() - started
        rule = project.rule
        out: dict[str, Any] = {"cards_created": cards, "create_s": created}
        out["one_card"] = await _pairs(store, ids[:1], pairs, 1, rule)
        out["many_cards_sequential"] = await _pairs(store, ids, pairs, 1, rule)
        out["many_cards_concurrent"] = await _pairs(store, ids, pairs, min(tasks, len(ids)), rule)
    finally:
        await store.close()
    return out
