"""Dial the operator's service and measure the callee's real talk time.

``ANSWEREDTIME_MS`` counts from the IVR's own ANSWER (transcripts b4h, b4k), so
it includes PIN entry and announcements. ``L()`` counts from the callee's
answer. The dialplan context ``[ivr-stamp]``, run by Dial's ``U()`` option on the
callee's answer, writes that moment into ``SHARED(IVR_ANSWERED)`` of our channel:

    talk_ms = ANSWEREDTIME_MS - (IVR_ANSWERED - CDR(answer,u)) * 1000

All in ``Decimal``: a float turns ``1795438887.464`` into ``…887.4639999`` and now
and then costs a caller a whole second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ._channel import AgiChannel
from ._errors import LocalProtocolError

__all__ = ["STAMP_CONTEXT", "DialOutcome", "check_dial_string", "dial"]

STAMP_CONTEXT = "ivr-stamp"
# A dial string the operator configures: technology/resource, '&' for parallel
# ringing. No ',' (it would start Dial's own arguments), no '|' (b4g: swallows
# timeout and limit), no spaces, quotes or parentheses.
_DIAL_STRING_RE = re.compile(r"^[A-Za-z0-9_-]+/[A-Za-z0-9/@._:+#*=~-]+(&[A-Za-z0-9_-]+/[A-Za-z0-9/@._:+#*=~-]+)*$")
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9/@._;:+~-]+$")
_VARS = "${DIALSTATUS},${ANSWEREDTIME_MS},${SHARED(IVR_ANSWERED)},${CDR(answer,u)},${HANGUPCAUSE}"


def check_dial_string(text: str) -> str:
    """Return ``text`` if it is a safe dial string. Raises ValueError otherwise."""
    if not _DIAL_STRING_RE.match(text):
        raise ValueError(f"not a dial string: {text!r} (e.g. PJSIP/0441234567@trunk or Local/100@service/n)")
    return text


@dataclass(frozen=True)
class DialOutcome:
    status: str                  # ANSWER, BUSY, NOANSWER, CONGESTION, CHANUNAVAIL, CANCEL, ...
    caller_hung_up: bool         # Dial returned -1 with the g option: the caller left
    talk_ms: int                 # the callee's real talk time (0 unless answered)
    answered_epoch: Decimal | None   # when the callee answered (Asterisk's clock)
    hangup_cause: str
    stamp_missing: bool = False  # ANSWER without IVR_ANSWERED: [ivr-stamp] is not loaded


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


async def dial(channel: AgiChannel, destination: str, *, timeout_s: int, limit_ms: int,
               warning_ms: int = 0, warning_sound: str | None = None) -> DialOutcome:
    """Run ``Dial`` with a hard talk limit and return what happened.

    Raises:
        LocalProtocolError: a destination or channel name that is unsafe to send.
        ChannelHungUp / ConnectionLost / … from the channel.
    """
    check_dial_string(destination)
    env = channel.env
    own = env.get("channel") if env else ""
    if not _CHANNEL_RE.match(own):
        raise LocalProtocolError(f"channel name unusable in U(): {own!r}")
    if limit_ms <= 0 or timeout_s <= 0:
        raise LocalProtocolError("Dial needs a positive timeout and limit")
    options = f"gU({STAMP_CONTEXT}^{own})"
    if 0 < warning_ms < limit_ms:
        if warning_sound:
            await channel.set_variable("LIMIT_WARNING_FILE", warning_sound)
        options += f"L({limit_ms}:{warning_ms})"
    else:
        options += f"L({limit_ms})"
    # No timeout: L() bounds the call; app_dial returns when it ends (b4f: after the warning).
    reply = await channel.command("EXEC", ["Dial", f"{destination},{timeout_s},{options}"], timeout_s=None)
    caller_left = reply.result_int == -1
    raw = await channel.get_full_variable(_VARS)
    parts = (raw.split(",") + [""] * 5)[:5]
    status, answered_ms_text, stamp_text, answer_u_text, cause = parts
    answered_ms = int(answered_ms_text) if answered_ms_text.isdigit() else 0
    stamp = _decimal(stamp_text)
    ivr_answer = _decimal(answer_u_text)
    talk_ms = 0
    stamp_missing = False
    if status == "ANSWER":
        if stamp is not None and ivr_answer is not None:
            before_ms = int(((stamp - ivr_answer) * 1000).to_integral_value())
            talk_ms = max(0, answered_ms - before_ms)
        else:
            stamp_missing = True
            talk_ms = answered_ms  # counts the IVR time too: the caller pays more, never less
    return DialOutcome(status=status or "UNKNOWN", caller_hung_up=caller_left, talk_ms=talk_ms,
                       answered_epoch=stamp if status == "ANSWER" else None, hangup_cause=cause,
                       stamp_missing=stamp_missing)
