"""One call's context: the channel, the store, the clock and what the CDR will say.

Flows talk to a ``Call`` in the words of the call (``play``, ``ask_digits``,
``finish``); the AGI and SQL underneath stay out of sight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from agi import AgiChannel, Environment
from prompts import Prompt, custom_sound, sound
from rating.models import Card, Grant, Project, Routing
from rating.numbers import CallerNumber, stored_caller_id
from rating.routes import NumberKind, Route
from rating.store.base import CallStore
from rating.zones import FACTOR_UNIT, QuotaPeriod, Zone

from .clock import Clock
from .metrics import Metrics
from .outcome import HangupSide, Outcome
from .settings import Settings
from .sounds import CustomSounds


@dataclass(frozen=True)
class Leg:
    """One Dial of the walk over the project's forwarding rules."""

    route: Route
    number: int              # 1 = the call's first Dial
    dial_string: str         # what Dial gets (a number rendered through the trunk)
    zone: Zone
    kind: NumberKind
    factor_pm: int           # the zone's factor the leg is rated at

    @property
    def call_type(self) -> str:
        """forwarded: out to a phone number; service: the first leg; fallback: a later one."""
        if self.route.is_number:
            return "forwarded"
        return "service" if self.number == 1 else "fallback"


class CallFinished(Exception):
    """Raised by ``Call.finish`` to leave the flow once the outcome is set (not a fault)."""


@dataclass
class Call:
    channel: AgiChannel
    env: Environment
    store: CallStore
    clock: Clock
    settings: Settings
    metrics: Metrics
    secret: bytes
    log: Any
    flow: str = "prepaid"
    # What the CDR will say; filled in as the call goes.
    start_ms: int = 0
    project: Project | None = None
    routing: Routing | None = None       # the configuration snapshot this call runs on
    caller: CallerNumber | None = None
    card: Card | None = None
    grant: Grant | None = None
    grant_settled: bool = False
    destination: str | None = None
    answer_ms: int | None = None
    talk_s: int = 0
    debited_s: int = 0
    outcome: Outcome | None = None
    hangup_side: HangupSide = HangupSide.UNKNOWN
    answered: bool = False
    dial_started: float | None = None   # clock.monotonic() while a Dial runs
    dial_lost: bool = False             # Dial timed out: the hold is not settled by this call
    hold_mark: str | None = None        # IVR_HOLD as set on the channel (None: never set)
    suspended: bool = False             # the operator's account is locked with calls suspended
    leg: Leg | None = None              # the leg that answered, or the last one tried
    quota: QuotaPeriod | None = None    # the card's included quota this month, if the project has one
    call_type: str = ""                 # set by the flow for closed / refused / blocked; else from the leg
    refusals: list[str] = field(default_factory=list)   # why legs were refused (country, blocked, …)
    custom_sounds: CustomSounds | None = None  # the engine's cache of the projects' own recordings
    _pending: list[str] = field(default_factory=list)

    def charge_terms(self) -> tuple[int, QuotaPeriod | None]:
        """The factor and quota the call is rated at: its leg's zone (the quota only for
        calls out to numbers; an internal leg is never surcharged and uses none)."""
        if self.leg is None:
            return FACTOR_UNIT, None
        return self.leg.factor_pm, (self.quota if self.leg.zone is not Zone.INTERNAL else None)

    def type_of_call(self) -> str:
        if self.call_type:
            return self.call_type
        if self.leg is not None:
            return self.leg.call_type
        return "blocked" if self.outcome in (Outcome.BLOCKED_CALLER, Outcome.BLOCKED_DESTINATION) else "refused"

    @property
    def uniqueid(self) -> str:
        return self.env.get("uniqueid")

    @property
    def caller_raw(self) -> str:
        """The caller ID as delivered, length-capped for storage (it is the caller's text)."""
        return stored_caller_id(self.env.get("callerid"))

    @property
    def dialled(self) -> str:
        """The access number: ``agi_arg_1`` when the dialplan passes it, else the extension."""
        args = self.env.args
        return args[0] if args and args[0] else self.env.get("extension")

    @property
    def language(self) -> str:
        return self.project.language if self.project else "en"

    def custom(self, prompt: Prompt) -> str | None:
        """The project's own recording of ``prompt``, if the operator imported one."""
        if self.project is None:
            return None
        if self.custom_sounds is not None:
            return self.custom_sounds.get(self.project.name, prompt.value, self.language, self.sounds_dir)
        return custom_sound(self.project.name, prompt.value, self.language, Path(self.sounds_dir))

    def sound(self, prompt: Prompt) -> str:
        """The project's own recording when there is one, else the standard prompt."""
        return self.custom(prompt) or sound(prompt)

    @property
    def sounds_dir(self) -> str:
        from prompts import SOUNDS_DIR

        return self.settings.sounds_dir or str(SOUNDS_DIR)

    async def answer(self) -> None:
        if self.answered:
            return
        await self.channel.answer()
        self.answered = True
        if self.project and self.env.get("language") != self.project.language:
            await self.channel.set_variable("CHANNEL(language)", self.project.language)

    def queue(self, *sounds: str) -> None:
        """Say these before the next thing the caller hears (saves a round trip)."""
        self._pending.extend(sounds)

    async def play(self, *sounds: str) -> None:
        await self.answer()
        batch, self._pending = [*self._pending, *sounds], []
        await self.channel.playback(batch)

    async def ask_digits(self, prompt: Prompt, *, max_digits: int) -> str:
        if self._pending:
            await self.play()
        await self.answer()
        result = await self.channel.get_data(self.sound(prompt), timeout_ms=self.settings.pin_timeout_ms,
                                             max_digits=max_digits)
        return result.digits

    async def finish(self, outcome: Outcome, *prompts: Prompt) -> NoReturn:
        """End the call with ``outcome`` after saying ``prompts`` and goodbye."""
        self.outcome = outcome
        self.hangup_side = HangupSide.ENGINE
        sounds = [self.sound(p) for p in prompts]
        if sounds:
            await self.play(*sounds, self.sound(Prompt.GOODBYE))
        raise CallFinished(outcome)
