"""The prepaid call: find the project, check the caller, find the forwarding rule
open now (or say the line is closed), identify the card (binding or PIN), reserve
its time, announce it, walk the rules (next leg on busy / no answer / unavailable),
settle.

Routing decisions (issue 11):
* The closed prompt is played after an answer, not as early media: callers on
  many mobile networks hear nothing of a 183's audio, and the answer costs them
  one short prompt. Nothing is debited (no card is asked for).
* A number destination is checked (allowed country, number type, outbound blocks)
  right before its Dial; a refused leg is skipped and the next open rule after it
  is dialled whatever its condition (the refused leg never rang), as the old
  fallback took over from a blocked service.
* Each leg's ``L()`` is the longest talk whose charge under that leg's zone
  factor (and the card's monthly quota) fits the time held for the call.

What the caller is told (issue 12):
* The announced time is the first leg's ``L()``: what this call can use, not the
  card's balance (with ``max_simultaneous_calls`` > 1 a call holds only its share).
  ``L()`` is in whole seconds and the sentence says seconds, so it is exact; a
  caller never hears more than they get. A later leg of the walk whose ``L()`` is
  shorter (a higher zone factor) is announced again before its Dial.
* The cut-off warning says the time really left when it plays: one built file per
  length (``prompts/_warning.py``, ``LIMIT_WARNING_FILE`` takes one file, no ``&``
  list), played when the longest length we can say that is at most the project's
  ``warning_s`` and shorter than this leg's ``L()`` is left. A call shorter than the
  threshold is warned within 5 s of the answer; one of 5 s or less not at all.
* A bound line whose card is used up or expired hears why and the call ends with
  that outcome (NO_CREDIT, CARD_EXPIRED): no PIN prompts, so silence is never a
  wrong PIN. A project may offer to type another card's PIN instead
  (``--when-card-used-up new-pin``): one optional prompt, silence says goodbye
  with that same outcome; see ``reserve_bound_line``.

Reads like the call; the AGI and SQL live in ``Call``, ``agi`` and ``rating``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from agi import ChannelHungUp, CommandTimeout
from prompts import Prompt, remaining_time, warning_length, warning_sound
from rating import errors
from rating.billing import talk_seconds_from_ms
from rating.models import Card, CardStatus, Grant, HoldCall
from rating.numbers import parse_caller
from rating.pins import is_pin_shaped, pin_hash
from rating.routes import (
    DestinationRefused,
    NumberKind,
    Route,
    check_number,
    dial_status_condition,
    first_leg,
    next_leg,
    render_trunk,
)
from rating.zones import QuotaPeriod, Zone, max_talk, month_of

from ..call import Call, Leg
from ..dialplan import CUT_BLOCKED, HoldMark, dial_service
from ..outcome import HangupSide, Outcome

__all__ = ["prepaid"]

_CONNECT_STATUS = {
    "ANSWER": Outcome.ANSWERED,
    "BUSY": Outcome.BUSY,
    "NOANSWER": Outcome.NO_ANSWER,
}


async def prepaid(call: Call) -> None:
    await find_project(call)
    if call.suspended:
        await call.finish(Outcome.SUSPENDED, Prompt.SERVICE_SUSPENDED)
    await refuse_blocked_caller(call)
    leg = await open_first_leg(call)       # closed, or every rule refused: ends here
    welcome = call.custom(Prompt.WELCOME)  # optional: only a project's own greeting
    if welcome:
        call.queue(welcome)
    grant = await reserve_bound_line(call)  # a bound line: its card, held in one step
    if not isinstance(grant, Grant):        # None: no bound card; an Outcome: it is used up
        card = await enter_pin(call, used_up=grant)
        grant = await reserve(call, card)
    limit_s = leg_limit_s(call, grant, leg)
    if limit_s > 0:  # else connect says "no credit"
        call.queue(*remaining_time(limit_s, call.language))   # what this call can use: its L()
    await connect(call, grant, leg)


async def find_project(call: Call) -> None:
    call.routing = routing = await call.store.routing(max_age_s=call.settings.config_refresh_s)
    project = next((routing.by_number[n] for n in _access_number_forms(call.dialled, routing.regions)
                    if n in routing.by_number), None)
    if project is None:
        call.log.warning("unknown_access_number", dialled=call.dialled)
        await call.finish(Outcome.UNKNOWN_NUMBER, Prompt.NOT_IN_SERVICE)
    call.project = project
    call.caller = parse_caller(call.env.get("callerid"), project.region)
    call.log = call.log.bind(project=project.name)


def _access_number_forms(dialled: str, regions: tuple[str, ...]) -> Iterator[str]:
    """The dialled number as the trunk delivered it (+41…, 0041…, 41…, 044…) in E.164,
    trying each region the projects use for the national form."""
    yield dialled
    if dialled.startswith("00"):
        yield "+" + dialled[2:]
    elif dialled.isdigit() and not dialled.startswith("0"):
        yield "+" + dialled
    for region in regions:
        number = parse_caller(dialled, region)
        if number.e164:
            yield number.e164


async def refuse_blocked_caller(call: Call) -> None:
    assert call.project and call.caller and call.routing
    pattern = call.routing.block_set(call.project, "inbound").first_match(call.caller)
    if pattern is not None:
        call.log.info("caller_blocked", pattern=pattern)
        await call.finish(Outcome.BLOCKED_CALLER, Prompt.NUMBER_BLOCKED)


def _dialled_number(dial_string: str) -> str:
    """``PJSIP/0041441234567@trunk`` -> ``0041441234567`` (the resource part's number)."""
    resource = dial_string.split("/", 1)[-1]
    return resource.split("@", 1)[0]


def open_at_now(call: Call, route: Route) -> bool:
    assert call.project
    return route.open_at(call.clock.now_ms(), call.project.timezone)


def resolve_leg(call: Call, route: Route, number: int) -> Leg | None:
    """The leg for ``route`` if the project may dial it now; None (logged) if it is refused."""
    assert call.project and call.routing
    project = call.project
    blocks = call.routing.block_set(project, "outbound")
    try:
        if not route.is_number:
            # A dial string: the outbound blocks apply to its number part, as before rules.
            pattern = blocks.first_match(parse_caller(_dialled_number(route.destination), project.region))
            if pattern is not None:
                raise DestinationRefused(f"matches the outbound block {pattern}", reason="blocked")
            return Leg(route=route, number=number, dial_string=route.destination, zone=Zone.INTERNAL,
                       kind=NumberKind.DIAL_STRING, factor_pm=project.tariff.factor(Zone.INTERNAL))
        if not project.trunk:
            raise DestinationRefused("the project has no trunk to dial numbers through", reason="invalid")
        info = check_number(route.destination, home=project.region, policy=project.policy, blocks=blocks)
        return Leg(route=route, number=number, dial_string=render_trunk(project.trunk, info.e164, project.region),
                   zone=info.zone, kind=info.kind, factor_pm=project.tariff.factor(info.zone))
    except (DestinationRefused, errors.InvalidInput) as refused:
        reason = refused.reason if isinstance(refused, DestinationRefused) else "invalid"
        call.log.warning("destination_refused", rule=route.position, destination=route.destination,
                         reason=reason, detail=str(refused))
        call.refusals.append(reason)
        return None


def after_refusal(call: Call, routes: tuple[Route, ...], refused: Route) -> Route | None:
    """The rule that takes a refused leg's place: the next one open now, whatever its condition."""
    return next((r for r in routes if r.position > refused.position and open_at_now(call, r)), None)


async def open_first_leg(call: Call) -> Leg:
    """The first leg of the walk, checked before any Dial (and before the PIN: a closed
    line or a forbidden destination never costs the caller a PIN entry)."""
    assert call.project
    project = call.project
    route = first_leg(project.routes, call.clock.now_ms(), project.timezone)
    if route is None:
        if any(r.hours is not None for r in project.routes):
            call.call_type = "closed"
            call.log.info("project_closed", timezone=project.timezone)
            await call.finish(Outcome.CLOSED, Prompt.CLOSED)
        call.log.warning("no_forwarding_rule")
        await call.finish(Outcome.FAILED, Prompt.SERVICE_UNAVAILABLE)
    while route is not None:
        leg = resolve_leg(call, route, 1)
        if leg is not None:
            return leg
        route = after_refusal(call, project.routes, route)
    call.destination = project.routes[0].destination if project.routes else None
    call.call_type = "blocked" if "blocked" in call.refusals else "refused"
    await call.finish(Outcome.BLOCKED_DESTINATION, Prompt.SERVICE_UNAVAILABLE)


def following_leg(call: Call, leg: Leg, status: str) -> Leg | None:
    """The next leg after ``leg`` ended with ``status``; None ends the walk."""
    assert call.project
    project = call.project
    failed = dial_status_condition(status)
    if failed is None:
        return None
    route = next_leg(project.routes, leg.route, failed, call.clock.now_ms(), project.timezone)
    while route is not None:
        following = resolve_leg(call, route, leg.number + 1)
        if following is not None:
            return following
        route = after_refusal(call, project.routes, route)
    return None


def quota_period(call: Call) -> QuotaPeriod | None:
    assert call.project
    tariff = call.project.tariff
    if tariff.quota_s <= 0:
        return None
    return QuotaPeriod(month=month_of(call.clock.now_ms(), call.project.timezone), limit_s=tariff.quota_s)


def _leg_terms(grant: Grant, leg: Leg) -> tuple[int, int]:
    """(factor, quota left) the leg is rated at."""
    quota_left = grant.quota_left_s if leg.zone is not Zone.INTERNAL else 0
    return leg.factor_pm, quota_left


def leg_limit_s(call: Call, grant: Grant, leg: Leg) -> int:
    """``L()`` of this leg: the longest talk whose charge fits the time held."""
    assert call.project
    factor, quota_left = _leg_terms(grant, leg)
    return max_talk(call.project.rule, grant.reserved_s, factor, quota_left)


async def reserve_bound_line(call: Call) -> Grant | Outcome | None:
    """The card bound to the caller's line, with its time held; None when the caller
    must enter a PIN (withheld number, unbound line).

    A bound card that cannot take the call (used up, expired, blocked, in use) ends it
    with the reason's prompt and outcome, by default. The old way, asking for a PIN after
    "no credit", cost a silent caller three PIN prompts and "wrong PIN", and the operator a
    PIN_FAILED CDR for a NO_CREDIT call. A caller who bought a new card still needs a way
    in from that line without calling the operator (who can ``ivr card bind`` it), so a
    project may offer it (``new_pin_when_used_up``): after the reason the caller hears
    "to use another card, enter its PIN now" once; silence says goodbye with the reason's
    outcome (returned here for ``enter_pin``), a typed PIN is a PIN entry like any other
    (throttle, wrong PINs, binding the line to the new card).
    """
    assert call.project and call.caller
    if call.caller.anonymous:
        return None
    project = call.project
    call.quota = quota_period(call)
    found = await call.store.reserve_bound(
        project_id=project.id, caller=call.caller.e164 or "", uniqueid=call.uniqueid, rule=project.rule,
        max_calls=project.max_simultaneous_calls, hold_s=_hold_s(call), now_ms=call.clock.now_ms(),
        quota=call.quota, call=_hold_call(call))
    if found is None:
        return None
    call.card = found.card
    if found.grant is not None:
        return _held(call, found.grant)
    status = found.card.status(call.clock.now_ms())
    if status in (CardStatus.EXHAUSTED, CardStatus.EXPIRED) and project.new_pin_when_used_up:
        call.log.info("bound_card_unusable", card=str(found.card.id), status=status.value, offer="new_pin")
        call.queue(call.sound(_STATUS_PROMPT[status]))
        return _STATUS_OUTCOME[status]
    if status in _STATUS_OUTCOME:
        call.log.info("bound_card_unusable", card=str(found.card.id), status=status.value)
        await call.finish(_STATUS_OUTCOME[status], _STATUS_PROMPT[status])
    assert isinstance(found.refusal, errors.CardUnusable)
    await call.finish(*_REFUSALS[type(found.refusal)])


def _hold_s(call: Call) -> int:
    """How long a hold may outlive its talk time: the ringing of every leg of the walk, and prompts."""
    assert call.project
    project = call.project
    ringing = sum(r.ring_timeout_s or project.ring_timeout_s for r in project.routes)
    return max(ringing, project.ring_timeout_s * 2) + 600


def _hold_call(call: Call) -> HoldCall:
    """The call's facts kept with its hold: whoever settles it writes the CDR from them."""
    return HoldCall(caller_raw=call.caller_raw, caller_e164=call.caller.e164 if call.caller else None,
                    dialled=call.dialled, start_ms=call.start_ms, asterisk=call.channel.peer or None)


def _held(call: Call, grant: Grant) -> Grant:
    call.grant = grant
    call.log.info("time_reserved", reserved_s=grant.reserved_s, max_talk_s=grant.max_talk_s)
    return grant


_STATUS_PROMPT = {
    CardStatus.EXHAUSTED: Prompt.NO_CREDIT,
    CardStatus.EXPIRED: Prompt.CARD_EXPIRED,
    CardStatus.BLOCKED: Prompt.CARD_BLOCKED,
}
_STATUS_OUTCOME = {
    CardStatus.EXHAUSTED: Outcome.NO_CREDIT,
    CardStatus.EXPIRED: Outcome.CARD_EXPIRED,
    CardStatus.BLOCKED: Outcome.CARD_BLOCKED,
}


# A PIN attempt still pending after this long belongs to a call that died at its prompt:
# it keeps counting as a guess but no longer as a caller at the prompt.
_ENTERING_MS = 120_000
_THROTTLE_PROMPT = {"line": Prompt.PIN_TOO_MANY, "project": Prompt.PIN_TOO_MANY,
                    "busy": Prompt.SERVICE_UNAVAILABLE}


async def enter_pin(call: Call, *, used_up: Outcome | None = None) -> Card:
    """Ask for the PIN up to ``pin_tries`` times. Before every prompt the throttle is checked
    and the attempt recorded in one store transaction, so simultaneous calls never get more
    guesses than the caps; an empty entry (timeout) is no guess; a wrong PIN is followed by a
    delay that doubles with the line's recent wrong PINs. Withheld callers share no per-line
    cap (a few calls would lock them all out): the project's cap bounds them.

    ``used_up``: the line's bound card is used up (its reason was said) and another card's
    PIN is only offered: the first prompt says so, and an empty entry ends the call with
    that outcome after a goodbye (the caller did not want to), never "wrong PIN"."""
    assert call.project and call.caller
    project, settings = call.project, call.settings
    caller_key = call.caller.e164 or "anonymous"
    line_cap = None if call.caller.anonymous else settings.pin_throttle_failures
    window_ms = settings.pin_throttle_window_s * 1000
    wrong = 0
    for attempt in range(1, settings.pin_tries + 1):
        now = call.clock.now_ms()
        verdict = await call.store.begin_pin_attempt(
            project_id=project.id, caller_key=caller_key, now_ms=now, window_ms=window_ms, line_cap=line_cap,
            project_cap=settings.pin_throttle_project_failures, entering_cap=settings.pin_entry_max_calls,
            entering_ms=_ENTERING_MS)
        if verdict.attempt_id is None:
            assert verdict.refused is not None
            call.metrics.pin_throttled.labels(verdict.refused).inc()
            call.log.warning("pin_entry_throttled", reason=verdict.refused, by_caller=verdict.by_caller,
                             in_project=verdict.in_project, entering=verdict.entering)
            await call.finish(Outcome.PIN_THROTTLED, _THROTTLE_PROMPT[verdict.refused])
        attempt_id = verdict.attempt_id
        prompt = Prompt.OTHER_CARD_PIN if used_up is not None and attempt == 1 else Prompt.ENTER_PIN
        try:
            digits = await call.ask_digits(prompt, max_digits=project.pin_length)
        except Exception:
            # The caller left at the prompt: nothing was evaluated, so it is no guess.
            await asyncio.shield(call.store.end_pin_attempt(attempt_id, wrong=False, since_ms=0))
            raise
        if not digits:
            await call.store.end_pin_attempt(attempt_id, wrong=False, since_ms=0)
            call.log.info("pin_empty", attempt=attempt)
            if used_up is not None:
                await call.play(call.sound(Prompt.GOODBYE))
                await call.finish(used_up)
            continue
        card = None
        if is_pin_shaped(digits, project.pin_length):
            card = await call.store.card_by_pin_hash(project.id, pin_hash(call.secret, project.id, digits))
        if card is not None:
            await call.store.end_pin_attempt(attempt_id, wrong=False, since_ms=0)
            return await accept_card(call, card)
        wrong += 1
        recent = await call.store.end_pin_attempt(attempt_id, wrong=True, since_ms=now - window_ms)
        call.metrics.pin_failures.inc()
        call.log.info("pin_rejected", attempt=attempt, entered_digits=len(digits))  # never the PIN
        if attempt < settings.pin_tries:
            # Withheld callers share one count: their delay grows within the call only.
            await _pin_delay(call, wrong if call.caller.anonymous else recent)
            call.queue(call.sound(Prompt.PIN_WRONG))
    await call.finish(Outcome.PIN_FAILED, Prompt.PIN_TOO_MANY)


async def _pin_delay(call: Call, wrong_pins: int) -> None:
    settings = call.settings
    delay_ms = min(settings.pin_delay_max_ms, settings.pin_delay_ms * 2 ** min(max(wrong_pins - 1, 0), 20))
    if delay_ms > 0:
        call.log.info("pin_delay", delay_ms=delay_ms, wrong_pins=wrong_pins)
        await asyncio.sleep(delay_ms / 1000)


async def accept_card(call: Call, card: Card) -> Card:
    assert call.project and call.caller
    call.card = card
    status = card.status(call.clock.now_ms())
    if status in _STATUS_OUTCOME:
        await call.finish(_STATUS_OUTCOME[status], _STATUS_PROMPT[status])
    now = call.clock.now_ms()
    bound = False
    if not call.caller.anonymous:  # withheld numbers are never bound
        result = await call.store.bind(
            project_id=call.project.id, caller=call.caller.e164 or "", card_id=card.id, now_ms=now, source="ivr",
            max_bound=call.project.max_bound_numbers, evict=call.project.evict_oldest_binding,
            actor=call.uniqueid)
        bound = result.bound
        if result.evicted:
            call.log.warning("binding_evicted", card=str(card.id), lines=len(result.evicted))
        if not bound:
            # The card has its lines: a guessed PIN must not push the owner's out. This
            # caller may go on calling with the PIN.
            call.log.warning("binding_refused", card=str(card.id), max_bound=call.project.max_bound_numbers)
    if not bound:
        await call.store.activate(card.id, now)
    call.log.info("pin_accepted", card=str(card.id), bound=bound)
    call.queue(call.sound(Prompt.PIN_ACCEPTED))
    return card


_REFUSALS: dict[type[errors.CardUnusable], tuple[Outcome, Prompt]] = {
    errors.CardInUse: (Outcome.CARD_IN_USE, Prompt.CARD_IN_USE),
    errors.CardBlocked: (Outcome.CARD_BLOCKED, Prompt.CARD_BLOCKED),
    errors.CardExpired: (Outcome.CARD_EXPIRED, Prompt.CARD_EXPIRED),
    errors.InsufficientBalance: (Outcome.NO_CREDIT, Prompt.NO_CREDIT),
}


async def reserve(call: Call, card: Card) -> Grant:
    assert call.project
    project = call.project
    try:
        call.quota = quota_period(call)
        grant = await call.store.reserve(
            card_id=card.id, uniqueid=call.uniqueid, rule=project.rule,
            max_calls=project.max_simultaneous_calls, hold_s=_hold_s(call), now_ms=call.clock.now_ms(),
            quota=call.quota, call=_hold_call(call))
    except errors.CardUnusable as refusal:
        await call.finish(*_REFUSALS[type(refusal)])
    return _held(call, grant)


async def connect(call: Call, grant: Grant, first: Leg) -> None:
    """Walk the forwarding rules within the grant: dial the leg, and on busy / no answer /
    unavailable the next rule whose condition holds; only the answered leg is debited."""
    assert call.project
    project = call.project
    await call.play()  # PIN accepted, remaining time: one round trip
    announced_s = leg_limit_s(call, grant, first)
    leg: Leg | None = first
    while leg is not None:
        call.leg, call.destination = leg, leg.dial_string
        limit_s = leg_limit_s(call, grant, leg)
        if limit_s <= 0:  # this zone's factor leaves no whole second of the time held
            call.log.info("leg_unaffordable", rule=leg.route.position, zone=leg.zone.value, factor=leg.factor_pm)
            await call.finish(Outcome.NO_CREDIT, Prompt.NO_CREDIT)
        if limit_s < announced_s:  # a dearer leg: the caller must not count on the time heard before
            await call.play(*remaining_time(limit_s, call.language))
            announced_s = limit_s
        warn_s = warning_length(project.warning_s, limit_s)  # the time really left when it plays
        factor_pm, quota = call.charge_terms()
        mark = HoldMark(hold_id=grant.reservation_id, destination=leg.dial_string, limit_s=limit_s,
                        factor_pm=factor_pm, quota=quota, rule=leg.route.position, leg=leg.number,
                        zone=leg.zone.value, kind=leg.kind.value, call_type=leg.call_type)
        already, call.hold_mark = call.hold_mark, mark.format()   # on the channel from here on
        call.dial_started = started = call.clock.monotonic()
        ring_s = leg.route.ring_timeout_s or project.ring_timeout_s
        try:
            result = await dial_service(call.channel, mark, timeout_s=ring_s, warning_ms=warn_s * 1000,
                                        warning_sound=warning_prompt(call, warn_s), hold_set=already,
                                        dial_timeout_s=ring_s + limit_s + call.settings.dial_margin_s)
        except CommandTimeout:
            # Dial did not return within ring + limit + margin: the peer lies or hangs. Bill
            # no guess; the hold stays open for the settle route / reconciliation (or expires).
            call.dial_lost, call.outcome = True, Outcome.LOST
            call.log.warning("dial_lost", hold=grant.reservation_id, waited_s=ring_s + limit_s
                             + call.settings.dial_margin_s)
            raise
        call.dial_started = None
        # Asterisk's figures are the peer's word: talk never exceeds what this engine saw pass
        # around the Dial on its own monotonic clock (a lying ANSWEREDTIME_MS debits nothing more).
        observed_ms = int((call.clock.monotonic() - started) * 1000) + 1
        talk = result.talk
        if result.status == "ANSWER" and talk.source != "stamps":
            call.log.warning("talk_stamp_missing", source=talk.source,
                             hint="load [ivr-stamp] and [ivr-stamp-end] from asterisk-conf/")
        call.log.info("dial_finished", destination=leg.dial_string, rule=leg.route.position, leg=leg.number,
                      zone=leg.zone.value, status=result.status, talk_ms=talk.ms,
                      caller_hung_up=result.caller_hung_up)
        if result.status == "ANSWER":
            capped_ms = min(talk.ms, observed_ms) if call.settings.talk_clock_cap else talk.ms
            call.talk_s = talk_seconds_from_ms(capped_ms, limit_s)
            if capped_ms < talk.ms:
                call.log.warning("talk_capped_by_engine_clock", reported_ms=talk.ms, observed_ms=observed_ms)
            answered = result.facts.dial.callee_answered
            if answered is not None:
                call.answer_ms = int(answered * 1000)
            call.outcome = Outcome.ANSWERED
            if result.caller_hung_up:
                call.hangup_side = HangupSide.CALLER
            elif call.talk_s >= limit_s:
                call.hangup_side = HangupSide.LIMIT
            else:
                call.hangup_side = HangupSide.CALLEE
                await tell_why_cut(call, result.cut)
            return
        if result.caller_hung_up:
            call.hangup_side = HangupSide.CALLER
            call.outcome = Outcome.ABANDONED
            raise ChannelHungUp("caller left while the service was ringing")
        call.outcome = _CONNECT_STATUS.get(result.status, Outcome.FAILED)
        leg = following_leg(call, leg, result.status)
    prompt = {Outcome.BUSY: Prompt.BUSY, Outcome.NO_ANSWER: Prompt.NO_ANSWER}.get(
        call.outcome or Outcome.FAILED, Prompt.SERVICE_UNAVAILABLE)
    await call.finish(call.outcome or Outcome.FAILED, prompt)


def warning_prompt(call: Call, warn_s: int) -> str | None:
    """The file that says "ends in ``warn_s``" (None for no warning). A project's own
    recording of the one-minute warning is used only when it is true: at 60 s."""
    if warn_s <= 0:
        return None
    return call.sound(Prompt.ONE_MINUTE_WARNING) if warn_s == 60 else warning_sound(warn_s)


async def tell_why_cut(call: Call, reason: str) -> None:
    """The callee's leg ended before the limit: if the operator cut it (``ivr card block
    --hangup`` leaves ``IVR_CUT`` on this channel over AMI, then hangs up the callee,
    which keeps the caller up: e5), the caller hears why before the goodbye."""
    if reason == CUT_BLOCKED:
        call.hangup_side = HangupSide.ENGINE
        call.log.info("call_cut_by_operator", reason=reason)
        await call.finish(Outcome.ANSWERED, Prompt.CARD_BLOCKED)
