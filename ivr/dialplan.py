"""Every dialplan name the engine relies on, in one place (as wazo-agid's
``dialplan_variables.py``): channel variables, contexts, AGI scripts, AstDB keys.

``asterisk-conf/extensions.conf`` uses exactly these names; ``tests/test_deploy.py``
checks that the two agree. Change one, change both.

How a call is settled whatever dies (issue 8)
---------------------------------------------
Before each Dial the engine sets ``IVR_HOLD`` on its channel: ``r<hold id>``, the leg's
terms as ``key=value`` words, the destination last (a dial string has no spaces), e.g.
``r42 limit=600 factor=1000 rule=1 leg=1 zone=internal kind=dial_string type=service
Local/100@prepaid-service/n`` (with a quota: ``quota=2026-12/3600``): what another
engine needs to settle the leg exactly as this one would have (:class:`HoldMark`). The Dial stamps the callee's
answer (``U(ivr-stamp^<agi_channel>)`` → ``SHARED(IVR_ANSWERED)``) and its hang-up
(``[ivr-stamp]`` pushes ``[ivr-stamp-end]`` as the callee's hangup handler →
``SHARED(IVR_ENDED)``), both in Asterisk's clock, epoch seconds with ms. Once the hold
is settled the engine clears ``IVR_HOLD``.

If the engine dies or stops during the Dial, Asterisk lets the Dial run to its natural
end (transcript e1), then:

* ``AGI()`` returns with ``AGISTATUS=SUCCESS`` and the dialplan, seeing ``IVR_HOLD``,
  runs the settle route ``agi://<engine>/settle,after-agi,<access number>``;
* when the caller hung up instead, the hangup handler ``[ivr-settle]`` that
  ``[prepaid-in]`` pushed before ``AGI()`` runs the same route with ``hangup-handler``
  on the dead channel (e2; for the AGI channel only after the engine's session closed,
  e3). It does nothing when ``IVR_HOLD`` is empty, i.e. after every normal end.

The settle route (any engine sharing the database) reads :data:`SETTLE_FACTS`, settles
the hold idempotently (the card is debited once, the one who settles writes the CDR)
and clears ``IVR_HOLD``. When no engine can be reached (``IVR_HOLD`` still set after
the route), ``[ivr-settle]`` keeps the facts in Asterisk's own database:

    family ``ivr-unsettled``, key ``${UNIQUEID}`` (the AGI channel's uniqueid),
    value  ``v1,${EPOCH},<the SETTLE_FACTS expression>``
    e.g.   ``v1,1796193860,ANSWER,6505,1796193853.608,1796193859.609,1796193853.101,16,r42 Local/100@svc/n``

read back over AMI ``DBGetTree`` (family ``ivr-unsettled``), settled with the same
function as the settle route (:func:`parse_unsettled`, ``Engine.settle_facts``) and
deleted (``DBDel``) once settled. ``IVR_HOLD`` is last so a destination may hold
anything but a newline.
"""

from __future__ import annotations

from dataclasses import dataclass

from agi import AgiChannel, check_channel_name, dial
from rating.settlement import DialFacts, TalkTime, parse_stamp, talk_time
from rating.zones import QuotaPeriod

__all__ = [
    "ANSWERED_STAMP",
    "CUT_BLOCKED",
    "CUT_VAR",
    "ENDED_STAMP",
    "HOLD_VAR",
    "PREPAID_SCRIPT",
    "RESULT_VAR",
    "SETTLE_CONTEXT",
    "SETTLE_FACTS",
    "SETTLE_SCRIPT",
    "STAMP_CONTEXT",
    "STAMP_END_CONTEXT",
    "UNSETTLED_FAMILY",
    "UNSETTLED_VALUE",
    "ChannelFacts",
    "HoldMark",
    "ServiceDial",
    "dial_service",
    "format_hold",
    "parse_facts",
    "parse_hold",
    "parse_unsettled",
]

# AGI scripts (agi_network_script) the engine serves.
PREPAID_SCRIPT = "prepaid"
SETTLE_SCRIPT = "settle"
SETTLE_MODES = ("after-agi", "hangup-handler")   # agi_arg_1 of the settle route

# Channel variables.
HOLD_VAR = "IVR_HOLD"            # "r<hold id> <destination>" during a Dial, "" once settled
RESULT_VAR = "IVR_RESULT"        # "error": the engine failed, the dialplan says "unavailable"
ANSWERED_STAMP = "IVR_ANSWERED"  # SHARED(): the callee's answer, epoch.ms (Asterisk's clock)
ENDED_STAMP = "IVR_ENDED"        # SHARED(): the callee's hang-up, epoch.ms
CUT_VAR = "IVR_CUT"              # set over AMI (Setvar) before the operator hangs up the callee:
CUT_BLOCKED = "blocked"          #   the card was blocked (ivr card block --hangup): the caller hears it

# Contexts.
STAMP_CONTEXT = "ivr-stamp"          # Dial U() on the callee's answer
STAMP_END_CONTEXT = "ivr-stamp-end"  # the callee's hangup handler, pushed by [ivr-stamp]
SETTLE_CONTEXT = "ivr-settle"        # the AGI channel's hangup handler, pushed by [prepaid-in]

# AstDB family of holds no engine could settle.
UNSETTLED_FAMILY = "ivr-unsettled"

# What a settlement reads off the channel, in this order (IVR_HOLD last: see above).
_FACTS = ("DIALSTATUS", "ANSWEREDTIME_MS", f"SHARED({ANSWERED_STAMP})", f"SHARED({ENDED_STAMP})",
          "CDR(answer,u)", "HANGUPCAUSE", HOLD_VAR)
SETTLE_FACTS = ",".join("${" + name + "}" for name in _FACTS)
UNSETTLED_VALUE = "v1,${EPOCH}," + SETTLE_FACTS


@dataclass(frozen=True)
class HoldMark:
    """What ``IVR_HOLD`` says: the hold, the Dial's destination and the leg's terms."""

    hold_id: int
    destination: str | None = None
    limit_s: int | None = None          # the leg's L() in seconds
    factor_pm: int = 1000               # the leg's zone factor
    quota: QuotaPeriod | None = None    # the card's monthly quota the leg may use
    rule: int | None = None             # the forwarding rule's position
    leg: int | None = None              # 1 = the call's first Dial
    zone: str = ""
    kind: str = ""
    call_type: str = ""

    def format(self) -> str:
        words = [f"r{self.hold_id}"]
        if self.limit_s is not None:
            words.append(f"limit={self.limit_s}")
        words.append(f"factor={self.factor_pm}")
        if self.quota is not None:
            words.append(f"quota={self.quota.month}/{self.quota.limit_s}")
        for key, value in (("rule", self.rule), ("leg", self.leg), ("zone", self.zone), ("kind", self.kind),
                           ("type", self.call_type)):
            if value not in (None, ""):
                words.append(f"{key}={value}")
        if self.destination:
            words.append(self.destination)
        return " ".join(words)


def format_hold(hold_id: int, destination: str) -> str:
    return HoldMark(hold_id, destination).format()


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_hold(text: str) -> HoldMark | None:
    """``IVR_HOLD`` as :meth:`HoldMark.format` writes it (``"r42"`` alone is a hold too);
    None when empty or not a hold. Unknown ``key=value`` words are ignored."""
    words = text.split()
    if not words or len(words[0]) < 2 or words[0][0] != "r" or not words[0][1:].isdigit():
        return None
    terms: dict[str, str] = {}
    destination = None
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if sep and key in ("limit", "factor", "quota", "rule", "leg", "zone", "kind", "type"):
            terms[key] = value
        else:
            destination = word
    quota = None
    month, _, limit = terms.get("quota", "").partition("/")
    if month and limit.isdigit():
        quota = QuotaPeriod(month=month, limit_s=int(limit))
    return HoldMark(hold_id=int(words[0][1:]), destination=destination, limit_s=_int(terms.get("limit", "")),
                    factor_pm=_int(terms.get("factor", "")) or 1000, quota=quota,
                    rule=_int(terms.get("rule", "")), leg=_int(terms.get("leg", "")), zone=terms.get("zone", ""),
                    kind=terms.get("kind", ""), call_type=terms.get("type", ""))


@dataclass(frozen=True)
class ChannelFacts:
    """What the channel said about the call: the Dial, the hold, the hang-up cause."""

    dial: DialFacts
    hold: str            # the raw IVR_HOLD ("" when none)
    hangup_cause: str
    written_epoch: int | None = None   # AstDB only: when the dialplan wrote the facts

    @property
    def mark(self) -> HoldMark | None:
        return parse_hold(self.hold)

    @property
    def hold_id(self) -> int | None:
        mark = self.mark
        return mark.hold_id if mark else None

    @property
    def destination(self) -> str | None:
        mark = self.mark
        return mark.destination if mark else None

    @property
    def talk(self) -> TalkTime:
        return talk_time(self.dial)


def parse_facts(text: str) -> ChannelFacts:
    """The expansion of :data:`SETTLE_FACTS`."""
    parts = text.split(",", len(_FACTS) - 1)
    parts += [""] * (len(_FACTS) - len(parts))
    status, answered_ms, answered, ended, ivr_answer, cause, hold = parts
    return ChannelFacts(dial=DialFacts.parse(status, answered_ms, answered, ended, ivr_answer),
                        hold=hold.strip(), hangup_cause=cause.strip())


def parse_unsettled(value: str) -> ChannelFacts:
    """An AstDB value written by ``[ivr-settle]`` (:data:`UNSETTLED_VALUE`).

    Raises:
        ValueError: not a value of this format (another version, garbage).
    """
    version, _, rest = value.partition(",")
    if version != "v1":
        raise ValueError(f"not an {UNSETTLED_FAMILY} value (v1,…): {value[:40]!r}")
    epoch_text, _, facts = rest.partition(",")
    epoch = parse_stamp(epoch_text)
    parsed = parse_facts(facts)
    return ChannelFacts(dial=parsed.dial, hold=parsed.hold, hangup_cause=parsed.hangup_cause,
                        written_epoch=int(epoch) if epoch is not None else None)


@dataclass(frozen=True)
class ServiceDial:
    """One Dial of the operator's service and what it left on the channel."""

    facts: ChannelFacts
    caller_hung_up: bool
    cut: str = ""          # IVR_CUT: why the operator cut the callee ("" none)

    @property
    def status(self) -> str:
        return self.facts.dial.status or "UNKNOWN"

    @property
    def talk(self) -> TalkTime:
        return self.facts.talk


async def dial_service(channel: AgiChannel, mark: HoldMark, *, timeout_s: int, warning_ms: int = 0,
                       warning_sound: str | None = None, hold_set: str | None = None,
                       dial_timeout_s: float | None = None) -> ServiceDial:
    """Mark the channel with the hold and the leg's terms (unless ``hold_set`` already is
    that value), Dial ``mark.destination`` for at most ``mark.limit_s`` with both stamps,
    read the facts a settlement needs.

    Raises:
        LocalProtocolError: an unsafe destination or channel name.
        ChannelHungUp / ConnectionLost / … from the channel.
    """
    assert mark.destination is not None and mark.limit_s is not None
    env = channel.env
    own = check_channel_name(env.get("channel") if env else "")
    hold = mark.format()
    if hold != hold_set:
        await channel.set_variable(HOLD_VAR, hold)
    # IVR_CUT rides on the same GET FULL VARIABLE (no round trip more per call); nothing
    # after IVR_HOLD holds a ',' (neither the hold's words nor a dial string), so it is
    # split off the end.
    reply = await dial(channel, mark.destination, timeout_s=timeout_s, limit_ms=mark.limit_s * 1000,
                       read=SETTLE_FACTS + ",${" + CUT_VAR + "}", on_answer=f"{STAMP_CONTEXT}^{own}",
                       warning_ms=warning_ms, warning_sound=warning_sound, dial_timeout_s=dial_timeout_s)
    values, _, cut = reply.values.rpartition(",")
    return ServiceDial(facts=parse_facts(values), caller_hung_up=reply.caller_hung_up, cut=cut.strip())
