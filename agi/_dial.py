"""Run ``Dial`` from AGI with a hard talk limit and read what it left on the channel.

The mechanism only: the dialplan names the engine relies on (the ``U()`` subroutine
that stamps the callee's answer and hang-up, the variables read back) are the
engine's (``ivr/dialplan.py``), passed in as ``on_answer`` and ``read``.

``EXEC Dial`` gets no command timeout: ``L()`` bounds the call and ``app_dial.c``
returns when it ends (b4f: only after a warning prompt that was playing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._channel import AgiChannel
from ._errors import LocalProtocolError

__all__ = ["DialReply", "check_channel_name", "check_dial_string", "dial"]

# A dial string the operator configures: technology/resource, '&' for parallel
# ringing. No ',' (it would start Dial's own arguments), no '|' (b4g: swallows
# timeout and limit), no spaces, quotes or parentheses.
_DIAL_STRING_RE = re.compile(r"^[A-Za-z0-9_-]+/[A-Za-z0-9/@._:+#*=~-]+(&[A-Za-z0-9_-]+/[A-Za-z0-9/@._:+#*=~-]+)*$")
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9/@._;:+~-]+$")
_GOSUB_RE = re.compile(r"^[A-Za-z0-9_-]+(\^[A-Za-z0-9/@._;:+~-]+)*$")


def check_dial_string(text: str) -> str:
    """Return ``text`` if it is a safe dial string. Raises ValueError otherwise."""
    if not _DIAL_STRING_RE.match(text):
        raise ValueError(f"not a dial string: {text!r} (e.g. PJSIP/0441234567@trunk or Local/100@service/n)")
    return text


def check_channel_name(text: str) -> str:
    """Return ``text`` if a channel name can go into Dial options (``U(ctx^<channel>)``).
    Raises LocalProtocolError otherwise."""
    if not _CHANNEL_RE.match(text):
        raise LocalProtocolError(f"channel name unusable in Dial options: {text!r}")
    return text


@dataclass(frozen=True)
class DialReply:
    caller_hung_up: bool   # Dial returned -1 with the g option: the caller left (c3)
    values: str            # the expansion of ``read``, read right after Dial returned


async def dial(channel: AgiChannel, destination: str, *, timeout_s: int, limit_ms: int, read: str,
               on_answer: str | None = None, warning_ms: int = 0, warning_sound: str | None = None,
               dial_timeout_s: float | None = None) -> DialReply:
    """Run ``Dial(destination,timeout_s,g[U(on_answer)]L(limit_ms[:warning_ms]))`` and
    read the expression ``read`` (``GET FULL VARIABLE``) once it returned.

    Raises:
        LocalProtocolError: a destination or subroutine that is unsafe to send.
        ChannelHungUp / ConnectionLost / … from the channel; CommandTimeout when Dial has
        not returned within ``dial_timeout_s`` (a peer that never answers it).
    """
    try:
        check_dial_string(destination)
    except ValueError as exc:
        raise LocalProtocolError(str(exc)) from None
    if limit_ms <= 0 or timeout_s <= 0:
        raise LocalProtocolError("Dial needs a positive timeout and limit")
    options = "g"
    if on_answer is not None:
        if not _GOSUB_RE.match(on_answer):
            raise LocalProtocolError(f"subroutine unusable in U(): {on_answer!r}")
        options += f"U({on_answer})"
    if 0 < warning_ms < limit_ms:
        if warning_sound:
            await channel.set_variable("LIMIT_WARNING_FILE", warning_sound)
        options += f"L({limit_ms}:{warning_ms})"
    else:
        options += f"L({limit_ms})"
    # L() bounds the call and app_dial returns when it ends (b4f: after the warning); the
    # caller's ``dial_timeout_s`` (ring + limit + a margin) only catches a peer that never does.
    reply = await channel.command("EXEC", ["Dial", f"{destination},{timeout_s},{options}"],
                                  timeout_s=dial_timeout_s)
    values = await channel.get_full_variable(read)
    return DialReply(caller_hung_up=reply.result_int == -1, values=values)
