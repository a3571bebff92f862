"""Reconciliation: open holds against the channels Asterisk really has (AMI).

At the engine's start (once the AMI login succeeded), every ``reconcile_s`` (5 s) and
soon after an AMI ``Hangup`` event, one pass runs, in this order:

1. ``CoreShowChannels``: the channels alive now (T1);
2. ``DBGetTree ivr-unsettled``: the facts the dialplan kept for calls no engine could
   settle (``ivr/dialplan.py``). Each is settled **exactly**, by the same idempotent
   ``Engine.settle_facts`` as the settle route, and deleted (``DBDel``) once the store
   has it (settled now, or before: a late replay changes nothing);
3. the open holds of the store (T3 > T2 > T1). A hold whose channel is alive, or whose
   call this engine is serving, is left alone. A hold whose channel is gone has
   finished all its dialplan (the settle route and the AstDB write run while the
   channel exists, e2/e3), so if it is still open at T3 its facts are truly gone
   (Asterisk crashed or restarted, or the dialplan is not ours). After
   ``ESTIMATE_AFTER_PASSES`` passes and ``estimate_grace_s`` without the channel (room
   for a settlement in flight, e.g. one a store journal replays) it is **estimated**.

Estimation policy (a prepaid operator must never give talk away, and must not
overcharge either): the hold is billed for an upper bound of its talk that is as tight
as what is known, never more than the hold's talk limit::

    talk = min(max_talk, end_bound - hold_created)

``hold_created`` is when the time was reserved: after PIN entry and the announcements,
so talk cannot have begun earlier. ``end_bound`` is the earliest moment the channel is
known to be gone: the first pass that missed it (at most ``reconcile_s`` after the last
pass that saw it, when this engine watched the call), or Asterisk's own start when it
restarted after the hold was made (FullyBooted ``Uptime``: all channels died then).
So the card pays for the time the call could at most have talked — ringing and
``reconcile_s`` of slack when the call was watched, the outage when it was not
(bounded by the talk limit), never less than the real talk. Billing the hold's whole
talk limit instead would overcharge every such call by up to the card's balance; billing
"since the Dial began" needs a Dial start only the lost facts had. The CDR's outcome is
``RECONCILED`` (``ivr cdr list --outcome RECONCILED``) and a ``hold_estimated`` line
gives the bounds, so the operator sees which calls were estimated and can refund.

Several Asterisk boxes on one database (PostgreSQL, issue 10): a hold keeps the address
its call's Asterisk connected from (``HoldCall.asterisk``, the FastAGI peer). A pass
judges only the holds of *its* Asterisk — the one its AMI watches, known by
``ami_asterisk_peers`` or else by ``ami_host``'s own addresses — because another box's
channels are not in this AMI's channel list and would look gone. Holds of other boxes
are left to the engines watching those (``foreign_holds`` in the pass); holds from
before migration 7 (no address) are judged as before, as one Asterisk's. A pass that
misses one of this engine's own live calls *from its Asterisk* in the channel list
refuses to estimate (the AMI is not the Asterisk that sends those calls).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from rating.errors import RatingError
from rating.models import Cdr, OpenHold

from ._tasks import cancel_and_wait
from .ami import AmiClient, AmiError
from .dialplan import UNSETTLED_FAMILY, parse_unsettled
from .outcome import HangupSide, Outcome

if TYPE_CHECKING:
    from .app import Engine

__all__ = ["ESTIMATE_AFTER_PASSES", "Pass", "Reconciler", "normal_address"]

log = structlog.get_logger("ivr.reconcile")

ESTIMATE_AFTER_PASSES = 2


@dataclass
class Pass:
    """What one pass found and did."""

    channels: int = 0
    open_holds: int = 0
    live_holds: int = 0
    exact: list[int] = field(default_factory=list)       # hold ids settled from AstDB facts
    estimated: list[int] = field(default_factory=list)   # hold ids settled by the policy
    foreign_holds: int = 0   # open holds of calls from another Asterisk: not this pass's to judge
    skipped: str | None = None


def normal_address(text: str) -> str:
    """An address as one spelling: ``::ffff:10.0.0.5`` (a dual-stack socket's view of an
    IPv4 peer) is ``10.0.0.5``, a zone index is dropped; a name stays as it is."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_ours(asterisk: str | None, own: frozenset[str]) -> bool:
    """Whether a hold (or a live call) with this origin belongs to the watched Asterisk.
    Unknown origin (``None``/empty: holds from before the origin was kept) counts as ours."""
    return not asterisk or normal_address(asterisk) in own


class Reconciler:
    def __init__(self, engine: Engine, ami: AmiClient, *, interval_s: float, grace_s: float,
                 now_ms: Callable[[], int], asterisk_peers: Iterable[str] = ()) -> None:
        self.engine = engine
        self._configured_peers = frozenset(normal_address(a) for a in asterisk_peers)
        self._own: frozenset[str] | None = None   # the watched Asterisk's addresses, once known
        self.ami = ami
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.now_ms = now_ms
        self._seen_alive: dict[int, int] = {}     # hold id -> last pass (ms) that saw its channel
        self._missing: dict[int, tuple[int, int]] = {}  # hold id -> (first pass missing it, passes missing)
        self._asterisk_started_ms: int | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._bad_values: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def wake(self) -> None:
        """Run a pass soon (after a login or a Hangup event)."""
        self._wake.set()

    def logged_in(self) -> None:
        self._own = None   # re-resolve ami_host at each login: the box may have moved
        uptime = self.ami.asterisk_uptime_s
        if uptime is not None:
            self._asterisk_started_ms = self.now_ms() - uptime * 1000
        self.wake()

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
                await asyncio.sleep(0.2)   # a burst of Hangup events: one pass
            except TimeoutError:
                pass
            self._wake.clear()
            if not self.ami.connected:
                continue
            try:
                await self.run_once()
            except AmiError as exc:
                log.warning("reconcile_ami_failed", error=str(exc))
            except RatingError as exc:
                log.warning("reconcile_store_failed", error=str(exc))
            except Exception:
                log.exception("reconcile_failed")

    async def own_addresses(self) -> frozenset[str]:
        """The addresses the watched Asterisk connects from: ``ami_asterisk_peers``, else
        what ``ami_host`` resolves to. Raises AmiError when it cannot be resolved."""
        if self._configured_peers:
            return self._configured_peers
        if self._own is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(self.ami.host, None)
            except OSError as exc:
                raise AmiError(f"cannot resolve ami_host {self.ami.host!r}: {exc}") from None
            self._own = frozenset(normal_address(str(info[4][0])) for info in infos)
        return self._own

    async def run_once(self) -> Pass:
        """One pass (see the module docstring). Raises AmiError, RatingError."""
        report = Pass()
        engine = self.engine
        own = await self.own_addresses()
        channels = await self.ami.channels()
        alive = {c.get("Uniqueid", "") for c in channels}
        report.channels = len(channels)
        for uniqueid, value in (await self.ami.db_tree(UNSETTLED_FAMILY)).items():
            hold_id = await self._settle_kept(uniqueid, value)
            if hold_id is not None:
                report.exact.append(hold_id)
        every_hold = await engine.store.open_holds()
        now = self.now_ms()
        report.open_holds = len(every_hold)
        engine.metrics.holds_open.set(len(every_hold))
        engine.metrics.calls_live.set(sum(1 for h in every_hold if h.uniqueid in alive or h.uniqueid in engine.live))
        holds = [h for h in every_hold if is_ours(h.asterisk, own)]
        report.foreign_holds = len(every_hold) - len(holds)
        serving = {uniqueid for uniqueid, call in engine.live.items() if is_ours(call.channel.peer, own)}
        lost = serving - alive
        live = [h for h in holds if h.uniqueid in alive or h.uniqueid in serving]
        report.live_holds = len(live)
        for hold in live:
            self._seen_alive[hold.hold_id] = now
            self._missing.pop(hold.hold_id, None)
        if lost:
            # This engine serves calls Asterisk does not list: not the Asterisk we think.
            log.error("reconcile_wrong_asterisk", address=self.ami.address, calls_not_listed=len(lost),
                      asterisk_addresses=sorted(own),
                      hint="ami_host/ami_port must name the Asterisk that sends the calls (ami_asterisk_peers"
                           " its FastAGI address when it differs); nothing estimated")
            report.skipped = "wrong_asterisk"
            return report
        for hold in holds:
            if hold.uniqueid in alive or hold.uniqueid in serving:
                continue
            first, passes = self._missing.get(hold.hold_id, (now, 0))
            self._missing[hold.hold_id] = (first, passes + 1)
            if passes + 1 >= ESTIMATE_AFTER_PASSES and now - first >= self.grace_s * 1000:
                if await self._estimate(hold, first_missing_ms=first, now_ms=now):
                    report.estimated.append(hold.hold_id)
        known = {h.hold_id for h in holds}
        for table in (self._missing, self._seen_alive):
            for hold_id in [k for k in table if k not in known]:
                table.pop(hold_id, None)
        return report

    async def _settle_kept(self, uniqueid: str, value: str) -> int | None:
        """Settle one AstDB entry exactly; delete it once the store has the settlement."""
        try:
            facts = parse_unsettled(value)
        except ValueError:
            if uniqueid not in self._bad_values:
                self._bad_values.add(uniqueid)
                log.warning("astdb_value_not_understood", family=UNSETTLED_FAMILY, key=uniqueid, value=value[:80])
            return None
        result = await self.engine.settle_facts(facts, uniqueid=uniqueid, caller_raw="", dialled="",
                                                settled_by="astdb")
        # Settled now, before (the settle route won), released, unknown or no hold at all:
        # either way the store needs nothing more from this entry.
        await self.ami.db_del(UNSETTLED_FAMILY, uniqueid)
        if result is not None and result.state == "settled":
            self.engine.metrics.holds_reconciled.labels("astdb").inc()
            return result.hold_id
        return None

    async def _estimate(self, hold: OpenHold, *, first_missing_ms: int, now_ms: int) -> bool:
        """Settle a hold whose facts are gone by the policy; True if this pass settled it."""
        end_bound = first_missing_ms
        bound_by = "first_pass_missing"
        started = self._asterisk_started_ms
        if started is not None and hold.created_ms <= started < end_bound:
            end_bound, bound_by = started, "asterisk_restart"
        talk_ms = max(0, end_bound - hold.created_ms)
        if hold.max_talk_s is not None:
            talk_ms = min(talk_ms, hold.max_talk_s * 1000)
        cdr = Cdr(uniqueid=hold.uniqueid, project_id=hold.project_id, card_id=hold.card_id,
                  caller_raw=hold.caller_raw or "", caller_e164=None, dialled="", destination=None,
                  start_ms=hold.created_ms, answer_ms=None, end_ms=end_bound, talk_s=0, debited_s=0,
                  outcome=Outcome.RECONCILED.value, hangup_side=HangupSide.UNKNOWN.value)
        result = await self.engine.store.settle_hold(hold.hold_id, uniqueid=hold.uniqueid, talk_ms=talk_ms, cdr=cdr,
                                                     now_ms=now_ms)
        self._missing.pop(hold.hold_id, None)
        if result.state != "settled":
            return False
        self.engine.metrics.holds_reconciled.labels("estimated").inc()
        self.engine.metrics.debited_seconds.inc(result.debited_s)
        self.engine.metrics.calls.labels("reconcile", Outcome.RECONCILED.value).inc()
        log.warning("hold_estimated", hold=hold.hold_id, card=str(hold.card_id), uniqueid=hold.uniqueid,
                    policy="hold_created_to_end_bound", end_bound_by=bound_by,
                    last_seen_alive_ms=self._seen_alive.get(hold.hold_id), talk_ms=talk_ms, talk_s=result.talk_s,
                    debited_s=result.debited_s)
        return True
