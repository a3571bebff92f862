"""A real engine on a loopback port with a fresh SQLite file, and a caller to drive it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr import operations as ops
from ivr.app import Engine
from ivr.clock import SystemClock
from ivr.metrics import Metrics
from ivr.settings import Settings
from rating.billing import BillingRule
from rating.models import Card, Project

ACCESS = "+41441234567"     # the project's access number (Zürich)
CALLER = "+41791234567"     # a Swiss mobile


@dataclass
class Harness:
    engine: Engine
    project: Project

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.engine.store

    async def card(self, minutes: int = 10, note: str = "Hans Muster", project: Project | None = None,
                   seconds: int | None = None) -> tuple[Card, str]:
        new = await ops.create_card(self.store, self.engine.secret, project=project or self.project,
                                    minutes=minutes, note=note, now_ms=SystemClock().now_ms())
        card = new.card
        if seconds is not None:  # an exact balance for the arithmetic tests
            card = await self.store.adjust(card.id, seconds - card.balance_s, "test balance",
                                           SystemClock().now_ms())
        return card, new.pin

    async def call(self, **script: Any) -> Any:
        from asterisk_sim import CallScript, DialScript, place_call

        assert self.engine.server is not None
        script.setdefault("caller_id", CALLER)
        script.setdefault("extension", ACCESS)
        script.setdefault("idle_timeout_s", 10.0)
        dials = script.pop("dials", None)
        if dials is not None:
            script["dials"] = [d if isinstance(d, DialScript) else DialScript(**d) for d in dials]
        return await place_call("127.0.0.1", self.engine.server.port, CallScript(**script))

    async def cdrs(self) -> list[Any]:
        return list(reversed(await self.store.cdrs()))

    async def balance(self, card: Card) -> int:
        return (await self.store.card(card.id)).balance_s


async def make_harness(tmp_path: Path, settings_options: dict[str, Any] | None = None, *, clock: Any = None,
                       **project_options: Any) -> Harness:
    # config_refresh_s=0: every call sees configuration changes at once (deterministic tests);
    # pin_delay_ms=0: no pause after a wrong PIN unless a test is about it
    options_s: dict[str, Any] = dict(database=str(tmp_path / "ivr.sqlite3"), port=0, metrics_port=0, grace_s=5,
                                     config_refresh_s=0, pin_delay_ms=0, talk_clock_cap=0)
    options_s.update(settings_options or {})
    settings = Settings(**options_s)
    engine = await Engine.create(settings, metrics=Metrics(), clock=clock)
    options: dict[str, Any] = dict(name="test1", numbers=[ACCESS], service="Local/100@prepaid-service/n",
                                   language="de", region="CH", price_per_minute_cents=50, currency="CHF",
                                   rule=BillingRule(), warning_s=60)
    options.update(project_options)
    try:
        project = await ops.create_project(engine.store, now_ms=SystemClock().now_ms(), **options)
        await engine.start()
    except Exception:  # setup failed: close the store (its thread would keep pytest alive), re-raise
        await engine.stop(grace_s=0)
        raise
    return Harness(engine=engine, project=project)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await make_harness(tmp_path)
    yield harness
    await harness.engine.stop(grace_s=5)
