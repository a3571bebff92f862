"""Settling a hold: the talk time from the channel's stamps, the debit, when a hold is stale
(``is_stale``, kept with the other hold decisions in ``rating.holds`` and re-exported).

Written once, used by every path that settles a call: the engine after its own Dial,
the settle route (``agi://…/settle``) run by the dialplan after ``AGI()`` returned
without a result or from a hangup handler, and the reconciliation of holds left open.

Talk time
---------
The dialplan stamps the callee's answer and its hang-up (``[ivr-stamp]`` run by Dial's
``U()`` on the callee; the hang-up handler it pushes there runs when ``app_dial.c``
hangs the callee up, ``ast_autoservice_chan_hangup_peer()``, before Dial returns):

    talk_ms = IVR_ENDED - IVR_ANSWERED                          (both Asterisk's clock)

Without the end stamp (an older dialplan) the talk comes from ``ANSWEREDTIME_MS``,
which counts from the IVR channel's own answer (``app_dial.c`` ``end_bridge_callback``
reads ``ast_channel_get_up_time_ms()`` of the caller; transcripts b4h, b4k):

    talk_ms = ANSWEREDTIME_MS - (IVR_ANSWERED - CDR(answer,u)) * 1000

but only while ``CDR(answer,u)`` is still the IVR's answer: after the bridge it may
belong to a new CDR (transcript e1: later than the callee's answer). Then, and when
the answer stamp is missing, the whole ``ANSWEREDTIME_MS`` is billed (the IVR's time
too): the caller pays a few seconds more, the operator never gives talk away.

All stamps are parsed as ``Decimal``: a float turns ``1795438887.464`` into
``…887.4639999`` and now and then costs a caller a whole second.

Settling
--------
A hold is settled at most once (the store's conditional update decides who wins);
:func:`settlement` turns the measured talk into what the winner writes: the talk
capped at the hold's ``max_talk_s`` (``L()`` cut there; its few ms of jitter are not
the caller's talk), the debit by the project's rule capped at the seconds held, so a
card never goes below zero whatever the stamps say.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .billing import BillingRule, talk_seconds_from_ms
from .holds import is_stale, settlement_debit

__all__ = [
    "DialFacts",
    "Settlement",
    "TalkTime",
    "is_stale",
    "parse_stamp",
    "settlement",
    "talk_time",
]


def parse_stamp(text: str | None) -> Decimal | None:
    """An Asterisk decimal timestamp (``1796193853.608``) or ms count, exactly; None when
    empty or not a finite number."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@dataclass(frozen=True)
class DialFacts:
    """What the channel says about a Dial, as read from Asterisk (strings parsed)."""

    status: str                          # DIALSTATUS: ANSWER, BUSY, NOANSWER, ... ("" unknown)
    answered_time_ms: int | None = None  # ANSWEREDTIME_MS: from the IVR's own answer
    callee_answered: Decimal | None = None  # SHARED(IVR_ANSWERED): the callee's answer
    callee_ended: Decimal | None = None     # SHARED(IVR_ENDED): the callee's hang-up
    ivr_answered: Decimal | None = None     # CDR(answer,u): trusted only before the callee's answer

    @classmethod
    def parse(cls, status: str, answered_time_ms: str, callee_answered: str, callee_ended: str,
              ivr_answered: str) -> DialFacts:
        """From the raw texts of the channel variables (unset = empty)."""
        ms = parse_stamp(answered_time_ms)
        return cls(status=status.strip(),
                   answered_time_ms=int(ms) if ms is not None and ms >= 0 and ms == int(ms) else None,
                   callee_answered=parse_stamp(callee_answered), callee_ended=parse_stamp(callee_ended),
                   ivr_answered=parse_stamp(ivr_answered))


@dataclass(frozen=True)
class TalkTime:
    ms: int
    source: str   # "stamps" | "answeredtime" | "answeredtime_whole" | "none"

    @property
    def exact(self) -> bool:
        return self.source in ("stamps", "answeredtime", "none")


def _ms(seconds: Decimal) -> int:
    return int((seconds * 1000).to_integral_value())


def talk_time(facts: DialFacts) -> TalkTime:
    """The callee's talk time in ms (0 unless answered); see the module docstring."""
    if facts.status != "ANSWER":
        return TalkTime(0, "none")
    answered, ended = facts.callee_answered, facts.callee_ended
    if answered is not None and ended is not None and ended >= answered:
        return TalkTime(_ms(ended - answered), "stamps")
    whole = facts.answered_time_ms
    ivr = facts.ivr_answered
    if whole is not None and answered is not None and ivr is not None and ivr <= answered:
        return TalkTime(max(0, whole - _ms(answered - ivr)), "answeredtime")
    if whole is not None:
        return TalkTime(whole, "answeredtime_whole")
    if answered is not None:
        # ANSWER without any duration: nothing to measure with. Not reachable with
        # app_dial (it sets ANSWEREDTIME_MS with DIALSTATUS), kept total for safety.
        return TalkTime(0, "answeredtime_whole")
    return TalkTime(0, "none")


@dataclass(frozen=True)
class Settlement:
    talk_s: int      # billable whole seconds, capped at the hold's max talk
    debit_s: int     # what the card pays, capped at the seconds held


def settlement(rule: BillingRule, *, talk_ms: int, max_talk_s: int, reserved_s: int) -> Settlement:
    """What a hold's settlement writes for ``talk_ms`` of measured talk."""
    talk_s = talk_seconds_from_ms(talk_ms, max_talk_s)
    debit = settlement_debit(reserved_s, rule.debit(talk_s))
    return Settlement(talk_s=talk_s, debit_s=debit)
