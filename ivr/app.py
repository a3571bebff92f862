"""The wiring: the only place that builds real objects (store, server, metrics).

``Engine.handle_call`` is the per-call task body: it binds the call's log context,
runs the flow, and whatever happens — a refusal, the caller hanging up, Asterisk
dropping the socket, a bug, shutdown — settles the reservation and writes the CDR
in ``finally``, shielded from cancellation, then ends the call itself (Asterisk
never closes the socket after a hang-up, transcript c6).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
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
from rating.models import Cdr
from rating.pins import load_or_create_secret
from rating.store.sqlite import SqliteStore

from .call import Call, CallFinished
from .clock import Clock, SystemClock
from .flows.prepaid import prepaid
from .metrics import Metrics
from .operations import account_state
from .outcome import HangupSide, Outcome
from .settings import Settings, SettingsError

log = structlog.get_logger("ivr.engine")

Flow = Callable[[Call], Awaitable[None]]
FLOWS: dict[str, Flow] = {"prepaid": prepaid}
VERSION = "0.1.0"


class _Hooks:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

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


@dataclass
class Engine:
    settings: Settings
    store: SqliteStore
    clock: Clock
    metrics: Metrics
    secret: bytes
    server: AgiServer | None = None
    calls_suspended: bool = False
    account_level: str = "ok"
    _account_task: asyncio.Task[None] | None = None

    @classmethod
    async def create(cls, settings: Settings, *, clock: Clock | None = None,
                     metrics: Metrics | None = None) -> Engine:
        metrics = metrics or Metrics(version=VERSION)
        store = SqliteStore(settings.database, observer=metrics.observe_store)
        await store.open()
        try:
            secret = load_or_create_secret(settings.secret_path)
        except BaseException:
            await store.close()  # its thread would keep the process alive
            raise
        return cls(settings=settings, store=store, clock=clock or SystemClock(), metrics=metrics, secret=secret)

    async def start(self) -> AgiServer:
        routes = {name: self._route(name, flow) for name, flow in FLOWS.items()}
        self.server = AgiServer(routes, host=self.settings.host, port=self.settings.port,
                                hooks=_Hooks(self.metrics), observer=self.metrics.observe_command,
                                env_timeout_s=self.settings.env_timeout_s)
        await self.server.start()
        log.info("engine_listening", host=self.settings.host, port=self.server.port)
        await self.refresh_account()
        self._account_task = asyncio.create_task(self._watch_account())
        return self.server

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
        """Stop accepting, let calls finish within the grace period, cancel the rest
        (their CDRs and debits are still written), close the store."""
        cancelled = 0
        if self._account_task is not None:
            self._account_task.cancel()
        if self.server is not None:
            await self.server.close()
            cancelled = await self.server.drain(self.settings.grace_s if grace_s is None else grace_s)
        await self.store.close()
        log.info("engine_stopped", cancelled_calls=cancelled)
        return cancelled

    def _route(self, name: str, flow: Flow) -> Callable[[AgiChannel], Awaitable[None]]:
        async def handler(channel: AgiChannel) -> None:
            await self.handle_call(channel, name, flow)
        return handler

    async def handle_call(self, channel: AgiChannel, flow_name: str, flow: Flow) -> None:
        env = channel.env
        assert env is not None
        structlog.contextvars.bind_contextvars(uniqueid=env.get("uniqueid"), channel=env.get("channel"),
                                               flow=flow_name)
        call = Call(channel=channel, env=env, store=self.store, clock=self.clock, settings=self.settings,
                    metrics=self.metrics, secret=self.secret, log=log, flow=flow_name,
                    start_ms=self.clock.now_ms(), suspended=self.calls_suspended)
        started = self.clock.monotonic()
        fault = False
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
            call.hangup_side = HangupSide.ENGINE
            if call.dial_started is not None and call.grant is not None:
                # AGI cannot interrupt a running Dial and Asterisk keeps the bridge up to
                # L(); bill what has passed since the Dial began (ringing included), so
                # the cut never gives time away. Ending the bridge itself needs AMI.
                elapsed_ms = int((self.clock.monotonic() - call.dial_started) * 1000)
                call.talk_s = talk_seconds_from_ms(elapsed_ms, call.grant.max_talk_s)
                call.outcome = Outcome.INTERRUPTED
            elif call.outcome is None:
                call.outcome = Outcome.ABANDONED
            log.warning("call_cancelled_at_shutdown", in_dial=call.dial_started is not None)
            await asyncio.shield(self._wrap_up(call, started, fault=False))
            raise
        except Exception:
            fault = True
            call.outcome = Outcome.ERROR
            self.metrics.call_faults.inc()
            log.exception("call_fault")
        await asyncio.shield(self._wrap_up(call, started, fault=fault))

    async def _wrap_up(self, call: Call, started: float, *, fault: bool) -> None:
        """Settle and write the CDR (one transaction), end the call. Never raises: if the
        joint write fails, settling and the CDR are tried apart, so one failing does not
        cost the other."""
        try:
            await self._settle_and_record(call)
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
        if call.grant is None or call.project is None or call.grant_settled:
            await self.store.write_cdr(self._cdr(call))
            return
        debit = call.project.rule.debit(call.talk_s)
        call.debited_s = await self.store.settle_and_record(call.grant, debit_s=debit, cdr=self._cdr(call),
                                                            now_ms=self.clock.now_ms())
        self._settled(call)

    async def _settle(self, call: Call) -> None:
        if call.grant is None or call.project is None or call.grant_settled:
            return
        debit = call.project.rule.debit(call.talk_s)
        call.debited_s = await self.store.settle(call.grant, debit_s=debit, uniqueid=call.uniqueid,
                                                 now_ms=self.clock.now_ms())
        self._settled(call)

    def _settled(self, call: Call) -> None:
        assert call.grant is not None
        call.grant_settled = True
        self.metrics.debited_seconds.inc(call.debited_s)
        log.info("debit_settled", debited_s=call.debited_s, released_s=call.grant.reserved_s - call.debited_s)

    def _cdr(self, call: Call) -> Cdr:
        return Cdr(
            uniqueid=call.uniqueid, project_id=call.project.id if call.project else None,
            card_id=call.card.id if call.card else None, caller_raw=call.env.get("callerid"),
            caller_e164=call.caller.e164 if call.caller else None, dialled=call.dialled,
            destination=call.destination, start_ms=call.start_ms, answer_ms=call.answer_ms,
            end_ms=self.clock.now_ms(), talk_s=call.talk_s, debited_s=call.debited_s,
            outcome=(call.outcome or Outcome.ABANDONED).value, hangup_side=call.hangup_side.value)

    async def _end_channel(self, call: Call, fault: bool) -> None:
        """A fault leaves the channel to the dialplan (IVR_RESULT=error: play 'service
        unavailable'); otherwise hang up. Best effort: the caller may be long gone."""
        channel = call.channel
        try:
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
