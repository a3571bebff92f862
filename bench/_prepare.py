"""The benchmark's database, prepared before the engine starts, through
``ivr.operations`` and the store as an operator's tools would do it: one project,
cards with bound caller numbers (one per concurrent bound call: a card takes one
call at a time), cards whose PIN new callers type, and a blacklist.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ivr import operations as ops
from ivr.clock import SystemClock
from rating.pins import load_or_create_secret
from rating.store.sqlite import SqliteStore

__all__ = ["ACCESS", "Plan", "bound_caller", "new_caller", "prepare"]

ACCESS = "+41441234567"            # the project's access number (Zürich)
SERVICE = "Local/100@prepaid-service/n"
CARD_MINUTES = 600                 # 36,000 s: thousands of 5-second test calls per card
_BOUND_BASE = 1_000_000            # bound callers +41 79 100 00 00 …
_NEW_BASE = 1_000_000              # first-time callers +41 78 100 00 00 …
BLOCKED_PATTERN = "+41900."        # premium lines: the pattern blocked callers match


def bound_caller(i: int) -> str:
    return f"+4179{_BOUND_BASE + i:07d}"


def new_caller(n: int) -> str:
    """The n-th first-time caller: never bound before, so the engine asks for a PIN."""
    return f"+4178{_NEW_BASE + n:07d}"


def blocked_caller(i: int) -> str:
    return f"+41900{100000 + i % 900000:06d}"


@dataclass
class Plan:
    """What the drivers and the references need to know about the prepared database."""

    database: str
    secret_file: str
    access: str
    bound_callers: list[str]
    pins: list[str]                       # PIN cards, one per concurrent first-time caller
    blocked_callers: list[str]
    blacklist_entries: int
    project: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def prepare(database: Path, *, bound: int, pin_cards: int, blacklist: int = 100) -> Plan:
    """Create the project, ``bound`` cards each bound to one caller, ``pin_cards`` unbound
    cards (their PINs are kept for the drivers) and ``blacklist`` blocked-number entries
    (half global, half the project's; the blocked callers match the last one, so every
    call checks them all)."""
    started = time.perf_counter()
    secret_path = Path(str(database) + ".secret")
    secret = load_or_create_secret(secret_path)
    now = SystemClock().now_ms
    async with SqliteStore(database) as store:
        project = await ops.create_project(
            store, name="bench", numbers=[ACCESS], service=SERVICE, language="de", region="CH",
            price_per_minute_cents=0, currency="CHF", warning_s=60, now_ms=now())
        callers: list[str] = []
        i = 0
        for new in await ops.buy_cards(store, secret, project=project, minutes=CARD_MINUTES,
                                       note="bench bound", count=bound, now_ms=now()):
            caller = bound_caller(i)
            await store.bind(project_id=project.id, caller=caller, card_id=new.card.id, now_ms=now(),
                             source="operator", max_bound=project.max_bound_numbers)
            callers.append(caller)
            i += 1
        pins = [new.pin for new in await ops.buy_cards(store, secret, project=project, minutes=CARD_MINUTES,
                                                         note="bench pin", count=pin_cards, now_ms=now())]
        entries = max(blacklist, 1)
        for k in range(entries - 1):
            if k % 2 == 0:
                await ops.blacklist_add(store, project=None, pattern=f"+4176555{k:04d}", direction="inbound",
                                        reason="bench", now_ms=now())
            else:
                await ops.blacklist_add(store, project=project, pattern=f"+4177666{k:03d}x",
                                        direction="inbound", reason="bench", now_ms=now())
        await ops.blacklist_add(store, project=project, pattern=BLOCKED_PATTERN, direction="inbound",
                                reason="premium lines", now_ms=now())
    return Plan(database=str(database), secret_file=str(secret_path), access=ACCESS, bound_callers=callers,
                pins=pins, blocked_callers=[blocked_caller(k) for k in range(max(pin_cards, 50))],
                blacklist_entries=entries,
                project={"name": project.name, "language": project.language, "region": project.region,
                         "max_simultaneous_calls": project.max_simultaneous_calls,
                         "card_minutes": CARD_MINUTES, "price_per_minute_cents": 0},
                seconds=time.perf_counter() - started)
