"""Live calls as the operator sees them: Asterisk's channels (AMI ``CoreShowChannels``)
joined with the open holds of the store, and how to end them.

A call is the channel the engine's FastAGI session runs on (its ``Uniqueid`` is the
hold's). Its state: ``ivr`` (PIN entry, announcements: the channel runs ``AGI``),
``ringing`` (runs ``Dial``, no bridge yet), ``talking`` (bridged with the callee). The
callee's leg is the ``AppDial`` channel of the same call (``Linkedid``) in the same
bridge, or, while ringing, not in any bridge (e4: the caller's own legs are in another).
Talk so far comes from the callee's answer stamp on the call's channel
(``SHARED(IVR_ANSWERED)``, Asterisk's clock), else from the callee leg's age.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from rating.models import OpenHold
from rating.settlement import parse_stamp
from rating.store.base import OperatorStore

from .ami import AmiClient, Channel
from .dialplan import ANSWERED_STAMP, CUT_BLOCKED, CUT_VAR, PREPAID_SCRIPT

__all__ = ["LiveCall", "end_card_calls", "live_calls"]


@dataclass(frozen=True)
class LiveCall:
    uniqueid: str
    channel: str
    project: str | None
    card_id: int | None
    hold_id: int | None
    caller: str
    destination: str | None
    state: str              # ivr | ringing | talking
    talk_s: int
    callee_channel: str | None

    def as_json(self) -> dict[str, object]:
        return {"uniqueid": self.uniqueid, "channel": self.channel, "project": self.project,
                "card": str(self.card_id) if self.card_id is not None else None,
                "hold": str(self.hold_id) if self.hold_id is not None else None, "caller": self.caller,
                "destination": self.destination, "state": self.state, "talk_s": self.talk_s,
                "callee_channel": self.callee_channel}


def _seconds(duration: str) -> int:
    """CoreShowChannel ``Duration`` ``HH:MM:SS`` -> seconds (0 when unreadable)."""
    parts = duration.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return 0
    h, m, s = (int(p) for p in parts)
    return h * 3600 + m * 60 + s


def _ours(channel: Channel) -> bool:
    """A channel running the engine's prepaid script (no hold yet: PIN entry)."""
    return channel.get("Application") == "AGI" and f"/{PREPAID_SCRIPT}" in channel.get("ApplicationData", "")


def _callee(own: Channel, channels: list[Channel]) -> Channel | None:
    bridge = own.get("BridgeId", "")
    for c in channels:
        if c is own or c.get("Application") != "AppDial" or c.get("Linkedid") != own.get("Linkedid"):
            continue
        if (bridge and c.get("BridgeId") == bridge) or (not bridge and not c.get("BridgeId")):
            return c
    return None


async def live_calls(ami: AmiClient, store: OperatorStore) -> list[LiveCall]:
    """The calls Asterisk has up now that are the engine's. Raises AmiError, RatingError."""
    channels = await ami.channels()
    holds: dict[str, OpenHold] = {h.uniqueid: h for h in await store.open_holds()}
    calls = []
    for own in channels:
        uniqueid = own.get("Uniqueid", "")
        hold = holds.get(uniqueid)
        if hold is None and not _ours(own):
            continue
        dialling = own.get("Application") == "Dial"
        callee = _callee(own, channels) if dialling else None
        state = ("talking" if own.get("BridgeId") else "ringing") if dialling else "ivr"
        talk_s = 0
        if state == "talking":
            stamp = parse_stamp(await ami.getvar(own.get("Channel", ""), f"SHARED({ANSWERED_STAMP})"))
            if stamp is not None:
                talk_s = max(0, int(Decimal(time.time()) - stamp))
            elif callee is not None:
                talk_s = _seconds(callee.get("Duration", ""))
        calls.append(LiveCall(
            uniqueid=uniqueid, channel=own.get("Channel", ""), project=hold.project if hold else None,
            card_id=hold.card_id if hold else None, hold_id=hold.hold_id if hold else None,
            caller=own.get("CallerIDNum", ""), destination=own.get("ApplicationData", "").split(",")[0] or None
            if dialling else None, state=state, talk_s=talk_s,
            callee_channel=callee.get("Channel") if callee else None))
    return calls


async def end_card_calls(ami: AmiClient, store: OperatorStore, card_id: int) -> list[LiveCall]:
    """End the live calls of a blocked card so that its callers hear why: the reason goes
    on the call's channel (``IVR_CUT``), then the callee's leg is hung up, which ends the
    Dial and keeps the caller (e5); the engine plays "card blocked". A call not talking
    yet (PIN entry, announcements, ringing) has its own channel hung up: a ringing
    callee's hang-up would look like "no answer" and send the call to the fallback.
    Returns the calls ended."""
    ended = []
    for call in await live_calls(ami, store):
        if call.card_id != card_id:
            continue
        await ami.setvar(call.channel, CUT_VAR, CUT_BLOCKED)
        target = call.callee_channel if call.state == "talking" and call.callee_channel else call.channel
        if await ami.hangup(target):
            ended.append(call)
    return ended
