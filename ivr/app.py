"""The wiring: the only place that builds real objects (store, server, metrics).

``Engine.handle_call`` is the per-call task body: it binds the call's log context,
runs the flow, and whatever happens — a refusal, the caller hanging up, Asterisk
dropping the socket, a bug — settles the reservation and writes the CDR in
``finally``, shielded from cancellation, then ends the call itself (Asterisk never
closes the socket after a hang-up, transcript c6).

One exception: a call whose Dial is running when the engine stops. AGI cannot end a
Dial and Asterisk lets it run to its natural end (transcript e1), so any figure the
engine could bill now is a guess. It bills nothing: it closes the session without
HANGUP and leaves the hold open and ``IVR_HOLD`` on the channel; when the Dial ends,
the dialplan hands the channel's exact stamps to the settle route of whichever engine
answers (this one restarted, or another on the same database): ``Engine.handle_settle``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from agi import (
    AgiChannel,
    AgiError,
    AgiServer,
    ChannelHungUp,
    CommandTimeout,
    ConnectionLost,
    ProtocolError,
)
from rating.billing import talk_seconds_from_ms
from rating.errors import StoreUnavailable
from rating.models import Cdr, HoldSettlement
from rating.numbers import stored_caller_id
from rating.pins import load_or_create_secret
from rating.store import open_store
from rating.store.base import OperatorStore

from .ami import AmiClient
from .call import Call, CallFinished
from .clock import Clock, SystemClock
from .dialplan import HOLD_VAR, SETTLE_FACTS, SETTLE_SCRIPT, ChannelFacts, parse_facts
from .flows.prepaid import prepaid
from .guard import GuardedStore, Recorder
from .journal import Journal
from .metrics import Metrics
from .operations import account_state
from .outcome import HangupSide, Outcome
from .reconcile import Reconciler
from .settings import Settings, SettingsError, peer_networks
from .sounds import CustomSounds

log = structlog.get_logger("ivr.engine")

Flow = Callable[[Call], Awaitable[None]]
FLOWS: dict[str, Flow] = {"prepaid": prepaid}
VERSION = "0.1.0"
POOL_CONNECTIONS = 10   # PostgreSQL: the pool's size (rating.store.postgres), all opened at start


class _Hooks:
    def __init__(self, metrics: Metrics, max_connections: int = 0) -> None:
        self.metrics = metrics
        self.max_connections = max_connections

    def connection_opened(self) -> None:
        self.metrics.connections.inc()
        self.metrics.connections_active.inc()

    def connection_closed(self) -> None:
        self.metrics.connections_active.dec()

    def protocol_error(self, side: str, error: Exception) -> None:
        self.metrics.protocol_errors.labels(side).inc()
        log.warning("agi_protocol_error", side=side, error=str(error))

    def unknown_script(self, script: str) -> None:
        log.warning("unknown_agi_script", script=script)

    def peer_refused(self, peer: str) -> None:
        self.metrics.peers_refused.inc()
        log.warning("agi_peer_refused", peer=peer, hint="add it to allowed_peers if it is your Asterisk")

    def connection_refused(self, active: int) -> None:
        self.metrics.connections_refused.inc()
        log.warning("agi_connection_refused", active=active, max_connections=self.max_connections)


@dataclass
class Engine:
    settings: Settings
    store: OperatorStore
    clock: Clock
    metrics: Metrics
    secret: bytes
    guarded: GuardedStore
    recorder: Recorder
    server: AgiServer | None = None
    calls_suspended: bool = False
    account_level: str = "ok"
    _account_task: asyncio.Task[None] | None = None
    live: dict[str, Call] = field(default_factory=dict)   # live calls by uniqueid
    # Shutdown leaves live Dials to the settle route (module docstring); False: the old
    # guess ("time since the Dial began", INTERRUPTED), kept only for a dialplan without
    # the settle route.
    hand_over_dials: bool = True
    ami: AmiClient | None = None
    reconciler: Reconciler | None = None
    _holds_task: asyncio.Task[None] | None = None
    _sounds: CustomSounds | None = None

    @classmethod
    async def create(cls, settings: Settings, *, clock: Clock | None = None,
                     metrics: Metrics | None = None) -> Engine:
        metrics = metrics or Metrics(version=VERSION)
        clock = clock or SystemClock()
        # A warm PostgreSQL pool (all its connections opened at start): a burst of calls must not
        # each wait, within its store budget, for a connection of its own to be opened.
        store = open_store(settings.database, observer=metrics.observe_store, budget_ms=settings.store_budget_ms,
                           min_connections=POOL_CONNECTIONS)
        await store.open()
        try:
            secret = load_or_create_secret(settings.secret_path)
        except ValueError as exc:  # SecretUnsafe, too short: the engine does not start
            await store.close()
            raise SettingsError(f"setting 'secret_file': {exc}") from None
        except BaseException:
            await store.close()  # its thread would keep the process alive
            raise
        if settings.secret_beside_database:
            log.warning("secret_beside_database", secret_file=str(settings.secret_path),
                        hint="move it apart from the database (secret_file) so one backup does not hold both")
        # Calls reach the store through the guard (fail closed at once while it fails);
        # what it does not take goes to the journal (ivr.journal) and is replayed later.
        guarded = GuardedStore(store, metrics=metrics)
        metrics.store_up.set_function(lambda: 0 if guarded.failing else 1)
        metrics.watch_store(store.pool_stats)
        recorder = Recorder(guarded, Journal(settings.state_path), metrics=metrics, log=log, now_ms=clock.now_ms)
        return cls(settings=settings, store=store, clock=clock, metrics=metrics, secret=secret, guarded=guarded,
                   recorder=recorder)

    async def start(self) -> AgiServer:
        routes = {name: self._route(name, flow) for name, flow in FLOWS.items()}
        routes[SETTLE_SCRIPT] = self.handle_settle
        self.server = AgiServer(routes, host=self.settings.host, port=self.settings.port,
                                hooks=_Hooks(self.metrics, self.settings.max_connections),
                                observer=self.metrics.observe_command, env_timeout_s=self.settings.env_timeout_s,
                                allowed_peers=peer_networks(self.settings.allowed_peers),
                                max_connections=self.settings.max_connections)
        await self.server.start()
        log.info("engine_listening", host=self.settings.host, port=self.server.port)
        await self.refresh_account()
        self._account_task = asyncio.create_task(self._watch_account())
        self.recorder.start()
        await self._start_ami()
        return self.server

    async def _count_holds(self) -> None:
        """Without AMI nothing reconciles, but ivr_holds_open still tells the operator."""
        while True:
            try:
                self.metrics.holds_open.set(len(await self.store.open_holds()))
            except Exception:
                log.exception("holds_count_failed")
            await asyncio.sleep(self.settings.reconcile_s)

    async def _start_ami(self) -> None:
        """The optional AMI connection and the reconciliation it drives (ivr/reconcile.py)."""
        s = self.settings
        if not s.ami_configured:
            log.warning("ami_not_configured",
                        cannot=["settle calls that ended while no engine could be reached from the facts"
                                " Asterisk kept (AstDB): their holds stay open until they expire",
                                "estimate holds whose facts are lost", "list live calls (ivr calls)",
                                "hang up calls (ivr calls hangup, ivr card block --hangup)"],
                        hint="set ami_host and ami_secret (manager.conf)")
            self._holds_task = asyncio.create_task(self._count_holds())
            return
        reconciler: Reconciler | None = None

        def on_event(name: str, fields: dict[str, str]) -> None:
            if name == "Hangup" and reconciler is not None:
                reconciler.wake()

        def on_login() -> None:
            if reconciler is not None:
                reconciler.logged_in()

        self.ami = AmiClient(s.ami_host, s.ami_port, s.ami_user, s.ami_secret, action_timeout_s=s.ami_timeout_s,
                             on_event=on_event, on_login=on_login)
        reconciler = self.reconciler = Reconciler(self, self.ami, interval_s=s.reconcile_s,
                                                  grace_s=3 * s.reconcile_s, now_ms=self.clock.now_ms,
                                                  asterisk_peers=[a.strip() for a in s.ami_asterisk_peers.split(",")
                                                                  if a.strip()])
        ami = self.ami
        self.metrics.ami_up.set_function(lambda: 1 if ami.connected else 0)
        await ami.start()
        reconciler.start()
        log.info("ami_starting", address=self.ami.address, reconcile_s=s.reconcile_s)

    async def refresh_account(self) -> None:
        """Reread the operator's account (the CLI changes it in the same database): log when
        it crosses its info or lock limit, and suspend new calls when the operator chose so.
        Read every ``account_check_s``, not per call: the owed amount is a sum over the ledger."""
        state = await account_state(self.store)
        self.calls_suspended = state.calls_suspended
        level = state.level.value
        if level != self.account_level:  # starts at "ok": a non-ok account is logged at start-up too
            event = {"ok": log.info, "info": log.warning, "locked": log.warning}[level]
            event("account_state", level=level, owed_cents=state.owed_cents, currency=state.currency,
                  info_limit_cents=state.info_limit_cents, lock_limit_cents=state.lock_limit_cents,
                  calls_suspended=state.calls_suspended)
        self.account_level = level

    async def _watch_account(self) -> None:
        while True:
            await asyncio.sleep(self.settings.account_check_s)
            try:
                await self.refresh_account()
            except Exception:
                log.exception("account_check_failed")

    async def stop(self, grace_s: float | None = None) -> int:
        """Stop accepting; calls in PIN entry or announcements go on for up to the grace
        period (until they are in a Dial or over); then the rest are cancelled: a call in
        a Dial is handed over to the settle route (nothing billed here, see the module
        docstring), any other one is settled and recorded as it stands. Close the store.

        Why not wait for the Dials: nobody answers new calls on this port meanwhile
        (the listener is closed), and the settle route bills them exactly later anyway."""
        cancelled = 0
        if self._account_task is not None:
            self._account_task.cancel()
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self._holds_task is not None:
            self._holds_task.cancel()
        if self.server is not None:
            await self.server.close()
            grace = self.settings.grace_s if grace_s is None else grace_s
            if self.hand_over_dials:
                await self._wait_until_all_in_dials(grace)
                grace = 0
            cancelled = await self.server.drain(grace)
        await self.recorder.stop()
        if self.ami is not None:
            await self.ami.close()
        await self.store.close()
        log.info("engine_stopped", cancelled_calls=cancelled)
        return cancelled

    async def _wait_until_all_in_dials(self, grace_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while loop.time() < deadline and self.server is not None and self.server.active_calls:
            if all(call.dial_started is not None for call in self.live.values()) and \
                    len(self.live) >= self.server.active_calls:
                return
            await asyncio.sleep(0.05)

    def _route(self, name: str, flow: Flow) -> Callable[[AgiChannel], Awaitable[None]]:
        async def handler(channel: AgiChannel) -> None:
            await self.handle_call(channel, name, flow)
        return handler

    def _custom_sounds(self) -> CustomSounds:
        if self._sounds is None:
            self._sounds = CustomSounds(max_age_s=self.settings.config_refresh_s, monotonic=self.clock.monotonic)
        return self._sounds

    async def handle_call(self, channel: AgiChannel, flow_name: str, flow: Flow) -> None:
        env = channel.env
        assert env is not None
        structlog.contextvars.bind_contextvars(uniqueid=env.get("uniqueid"), channel=env.get("channel"),
                                               flow=flow_name)
        call = Call(channel=channel, env=env, store=self.guarded, clock=self.clock, settings=self.settings,
                    metrics=self.metrics, secret=self.secret, log=log, flow=flow_name,
                    start_ms=self.clock.now_ms(), suspended=self.calls_suspended, custom_sounds=self._custom_sounds())
        started = self.clock.monotonic()
        fault = False
        self.live[call.uniqueid] = call
        try:
            await flow(call)
        except CallFinished:
            pass
        except ChannelHungUp:
            call.hangup_side = HangupSide.CALLER
            if call.outcome is None:
                call.outcome = Outcome.ABANDONED
        except (ConnectionLost, CommandTimeout, ProtocolError) as exc:
            call.hangup_side = HangupSide.NETWORK
            if call.outcome is None:
                call.outcome = Outcome.ABANDONED
            log.warning("agi_connection_failed", error=str(exc), error_type=type(exc).__name__)
            if isinstance(exc, ProtocolError):
                self.metrics.protocol_errors.labels("remote" if "Remote" in type(exc).__name__ else "local").inc()
        except asyncio.CancelledError:
            self.live.pop(call.uniqueid, None)
            if self.hand_over_dials and call.dial_started is not None and call.grant is not None \
                    and call.hold_mark is not None:
                # Shutdown during the Dial: bill nothing, write no CDR, send no HANGUP.
                # The Dial goes on (e1); the settle route settles it exactly when it ends.
                log.warning("call_handed_over", hold=call.grant.reservation_id, card=str(call.grant.card_id),
                            to="settle_route")
                self.metrics.calls.labels(call.flow, "HANDED_OVER").inc()
                structlog.contextvars.clear_contextvars()
                raise
            call.hangup_side = HangupSide.ENGINE
            if call.dial_started is not None and call.grant is not None:
                # Not yet handed over (hand_over_dials off): bill the time since the Dial began.
                elapsed_ms = int((self.clock.monotonic() - call.dial_started) * 1000)
                call.talk_s = talk_seconds_from_ms(elapsed_ms, call.grant.max_talk_s)
                call.outcome = Outcome.INTERRUPTED
            elif call.outcome is None:
                call.outcome = Outcome.ABANDONED
            log.warning("call_cancelled_at_shutdown", in_dial=call.dial_started is not None)
            await asyncio.shield(self._wrap_up(call, started, fault=False))
            raise
        except StoreUnavailable as exc:  # fail closed: the dialplan says "service unavailable"
            fault = True
            call.outcome = Outcome.ERROR
            log.warning("store_unavailable", error=str(exc))
        except Exception:
            fault = True
            call.outcome = Outcome.ERROR
            self.metrics.call_faults.inc()
            log.exception("call_fault")
        self.live.pop(call.uniqueid, None)
        await asyncio.shield(self._wrap_up(call, started, fault=fault))

    async def handle_settle(self, channel: AgiChannel) -> None:
        """The settle route (``agi://…/settle,<mode>,<access number>``): the dialplan runs
        it after ``AGI()`` returned without a result (mode ``after-agi``) and from the
        hangup handler (``hangup-handler``, on a dead channel: only GET/SET VARIABLE).
        Reads the facts off the channel, settles the hold, clears ``IVR_HOLD``.
        Idempotent: a second arrival finds the hold settled and changes nothing."""
        env = channel.env
        assert env is not None
        args = env.args
        mode = args[0] if args else ""
        structlog.contextvars.bind_contextvars(uniqueid=env.get("uniqueid"), channel=env.get("channel"),
                                               flow=SETTLE_SCRIPT, mode=mode)
        try:
            facts = parse_facts(await channel.get_full_variable(SETTLE_FACTS))
            result = await self.settle_facts(facts, uniqueid=env.get("uniqueid"),
                                             caller_raw=stored_caller_id(env.get("callerid")),
                                             dialled=args[1] if len(args) > 1 and args[1] else env.get("extension"),
                                             settled_by=mode or SETTLE_SCRIPT)
            if result is not None or facts.hold_id is None:
                await channel.set_variable(HOLD_VAR, "")
        except (AgiError, OSError) as exc:
            log.warning("settle_route_channel_failed", error=str(exc), error_type=type(exc).__name__)
        except Exception:
            # The store failed: IVR_HOLD stays, so the dialplan keeps the facts in AstDB.
            log.exception("settle_route_failed")
        finally:
            structlog.contextvars.clear_contextvars()

    async def settle_facts(self, facts: ChannelFacts, *, uniqueid: str, caller_raw: str, dialled: str,
                           settled_by: str) -> HoldSettlement | None:
        """Settle the hold named in ``facts`` exactly, from any engine: the settle route,
        and the facts the dialplan kept in AstDB (``ivr.dialplan.parse_unsettled``).
        Returns what happened (None: the facts name no hold). Raises RatingError when
        the store fails."""
        mark = facts.mark
        if mark is None:
            log.warning("settle_without_hold", hold=facts.hold, settled_by=settled_by)
            return None
        hold_id = mark.hold_id
        talk = facts.talk
        dial = facts.dial
        now_ms = self.clock.now_ms()
        outcome = {"ANSWER": Outcome.ANSWERED, "BUSY": Outcome.BUSY, "NOANSWER": Outcome.NO_ANSWER,
                   "CANCEL": Outcome.ABANDONED}.get(dial.status, Outcome.FAILED)
        cdr = Cdr(uniqueid=uniqueid, project_id=None, card_id=None, caller_raw=caller_raw, caller_e164=None,
                  dialled=dialled, destination=facts.destination, start_ms=0,
                  answer_ms=int(dial.callee_answered * 1000) if dial.callee_answered is not None else None,
                  end_ms=int(dial.callee_ended * 1000) if dial.callee_ended is not None else now_ms,
                  talk_s=0, debited_s=0, outcome=outcome.value,
                  hangup_side=(HangupSide.CALLEE if settled_by == "after-agi" else HangupSide.UNKNOWN).value,
                  call_type=mark.call_type, route_position=mark.rule, leg=mark.leg, zone=mark.zone,
                  number_type=mark.kind, factor_pm=mark.factor_pm)
        result = await self.guarded.settle_hold(hold_id, uniqueid=uniqueid, talk_ms=talk.ms, cdr=cdr, now_ms=now_ms,
                                              limit_s=mark.limit_s, factor_pm=mark.factor_pm, quota=mark.quota)
        if result.state == "settled":
            self.metrics.debited_seconds.inc(result.debited_s)
            self.metrics.calls.labels(SETTLE_SCRIPT, outcome.value).inc()
            log.info("hold_settled", hold=hold_id, card=str(result.card_id), settled_by=settled_by,
                     talk_ms=talk.ms, talk_source=talk.source, talk_s=result.talk_s, debited_s=result.debited_s)
        elif result.state == "unknown":
            log.warning("settle_unknown_hold", hold=hold_id, settled_by=settled_by,
                        hint="no open hold with this id for this uniqueid; nothing changed")
        else:
            log.info("hold_already_settled", hold=hold_id, state=result.state, settled_by=settled_by)
        return result

    async def _wrap_up(self, call: Call, started: float, *, fault: bool) -> None:
        """Settle and write the CDR (one transaction), end the call. Never raises: a store
        that does not answer within its budget gets them journalled (replayed once it is
        back); any other failure of the joint write tries settling and the CDR apart, so
        one failing does not cost the other."""
        try:
            await self._settle_and_record(call)
        except StoreUnavailable as exc:
            await self._journal(call, str(exc))
        except Exception:
            log.exception("settle_and_record_failed")
            try:
                await self._settle(call)
            except Exception:
                log.exception("settle_failed")
            try:
                await self.store.write_cdr(self._cdr(call))
            except Exception:
                log.exception("cdr_write_failed")
        outcome = call.outcome or Outcome.ABANDONED
        self.metrics.calls.labels(call.flow, outcome.value).inc()
        log.info("call_finished", outcome=outcome.value, hangup_side=call.hangup_side.value,
                 duration_s=round(self.clock.monotonic() - started, 3), talk_s=call.talk_s,
                 debited_s=call.debited_s, card=str(call.card.id) if call.card else None)
        await self._end_channel(call, fault)
        structlog.contextvars.clear_contextvars()

    async def _settle_and_record(self, call: Call) -> None:
        if call.grant is None or call.project is None or call.grant_settled or call.dial_lost:
            await self.guarded.write_cdr(self._cdr(call))
            return
        debit = call.project.rule.debit(call.talk_s)
        factor_pm, quota = call.charge_terms()
        call.debited_s = await self.guarded.settle_and_record(call.grant, debit_s=debit, cdr=self._cdr(call),
                                                              now_ms=self.clock.now_ms(), factor_pm=factor_pm,
                                                              quota=quota)
        self._settled(call)

    async def _journal(self, call: Call, reason: str) -> None:
        """The settlement (the debit by the project's rule, capped at the hold when replayed)
        and the CDR, for the journal; the hold stays open until the replay settles it."""
        grant = None if call.grant_settled or call.project is None or call.dial_lost else call.grant
        debit = call.project.rule.debit(call.talk_s) if grant is not None and call.project else 0
        factor_pm, quota = call.charge_terms()
        await self.recorder.journal_call(grant, debit_s=debit, cdr=self._cdr(call), now_ms=self.clock.now_ms(),
                                         factor_pm=factor_pm, quota=quota, reason=reason)

    async def _settle(self, call: Call) -> None:
        if call.grant is None or call.project is None or call.grant_settled or call.dial_lost:
            return
        debit = call.project.rule.debit(call.talk_s)
        factor_pm, quota = call.charge_terms()
        call.debited_s = await self.store.settle(call.grant, debit_s=debit, uniqueid=call.uniqueid,
                                                 now_ms=self.clock.now_ms(), factor_pm=factor_pm, quota=quota)
        self._settled(call)

    def _settled(self, call: Call) -> None:
        assert call.grant is not None
        call.grant_settled = True
        self.metrics.debited_seconds.inc(call.debited_s)
        log.info("debit_settled", debited_s=call.debited_s, released_s=call.grant.reserved_s - call.debited_s)

    def _cdr(self, call: Call) -> Cdr:
        return Cdr(
            uniqueid=call.uniqueid, project_id=call.project.id if call.project else None,
            card_id=call.card.id if call.card else None, caller_raw=call.caller_raw,
            caller_e164=call.caller.e164 if call.caller else None, dialled=call.dialled,
            destination=call.destination, start_ms=call.start_ms, answer_ms=call.answer_ms,
            end_ms=self._end_ms(call), talk_s=call.talk_s, debited_s=call.debited_s,
            outcome=(call.outcome or Outcome.ABANDONED).value, hangup_side=call.hangup_side.value,
            call_type=call.type_of_call(), route_position=call.leg.route.position if call.leg else None,
            leg=call.leg.number if call.leg else None, zone=call.leg.zone.value if call.leg else "",
            number_type=call.leg.kind.value if call.leg else "", factor_pm=call.charge_terms()[0],
            price_per_minute_cents=call.project.price_per_minute_cents if call.project else None,
            currency=call.project.currency if call.project else None)

    def _end_ms(self, call: Call) -> int:
        """Now, but never before the callee's answer plus the talk billed: the answer time
        comes from Asterisk's clock (IVR_ANSWERED), which may run ahead of ours (a
        simulated call's virtual time), and a CDR must not end before its talk did."""
        now = self.clock.now_ms()
        if call.answer_ms is not None:
            return max(now, call.answer_ms + call.talk_s * 1000)
        return now

    async def _end_channel(self, call: Call, fault: bool) -> None:
        """A fault leaves the channel to the dialplan (IVR_RESULT=error: play 'service
        unavailable'); otherwise hang up. Best effort: the caller may be long gone."""
        channel = call.channel
        try:
            if call.hold_mark is not None and call.grant_settled:
                # Settled: the hangup handler ([ivr-settle]) then has nothing to do (e3).
                await channel.set_variable(HOLD_VAR, "")
            if fault:
                await channel.set_variable("IVR_RESULT", "error")
            elif not channel.hung_up:
                # No IVR_RESULT=ok first: after HANGUP the dialplan runs only `h` (d6), so
                # nobody would read it; it would cost every call a round trip.
                await channel.hangup()
        except (AgiError, OSError):
            pass


def run_event_loop(main: Coroutine[Any, Any, None], choice: str = "auto") -> None:
    """Run ``main`` on uvloop when it is installed (or asked for), else on asyncio's loop.

    uvloop (libuv, the ``fast`` extra) halves the event loop's own cost per AGI round
    trip, which is most of what the engine spends per call (bench/README.md)."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SettingsError("setting 'event_loop': uvloop is not installed"
                                    " (pip install 'ivr-prepaid[fast]')") from None
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main)
            return
    asyncio.run(main)


class BindError(OSError):
    """An address the engine cannot listen on (in use, not local, not permitted)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _bind_error(what: str, host: str, port: int, exc: OSError) -> BindError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return BindError(f"cannot listen for {what} on {host}:{port}: {reason}")


async def serve(settings: Settings) -> None:
    """Run the engine until SIGTERM/SIGINT; a second SIGINT forces exit.

    Raises BindError when a port cannot be bound, StoreUnavailable when the database
    cannot be opened; either way nothing is left running (store thread, metrics server)."""
    engine = await Engine.create(settings)
    metrics_server = None
    try:
        if settings.metrics_port:
            from prometheus_client import start_http_server

            try:
                metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host,
                                                      registry=engine.metrics.registry)
            except OSError as exc:
                raise _bind_error("metrics", settings.metrics_host, settings.metrics_port, exc) from None
            log.info("metrics_listening", host=settings.metrics_host, port=settings.metrics_port)
        try:
            await engine.start()
        except OSError as exc:
            raise _bind_error("FastAGI", settings.host, settings.port, exc) from None
    except BaseException:
        await engine.stop(grace_s=0)
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1 and signum == signal.SIGINT:
            # Forced means now: no grace, no waiting for the store's thread. Holds
            # of the calls cut here expire (rating.store RESERVATION_GRACE_MS).
            log.warning("forced_exit", active_calls=engine.server.active_calls if engine.server else 0)
            sys.stderr.flush()
            os._exit(130)
        log.info("shutdown_requested", signal=signal.Signals(signum).name,
                 active_calls=engine.server.active_calls if engine.server else 0)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()
    await engine.stop()
    if metrics_server is not None:
        metrics_server.shutdown()
